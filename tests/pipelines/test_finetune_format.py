"""`gpt2lab finetune --format persona-chat`: the option reaches the train flow's config,
and the flow's data step encodes dialogues as persona + turns + reply."""

from __future__ import annotations

import contextlib
from pathlib import Path

from typer.testing import CliRunner

from model import load_tokenizer, train_bpe
from pipelines.cli import app
from tasks.dialogue.data import training_texts
from tasks.encode.loader import sequential_windows
from tasks.encode.token_shards import read_meta

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SPLIT = REPO_ROOT / "tasks" / "evals" / "builtin" / "local_data" / "personachat.train.jsonl"
runner = CliRunner()


def test_finetune_reads_dialogues_when_told_their_format(tmp_path, monkeypatch):
    import pipelines.cli.stages
    import pipelines.train

    model_dir = tmp_path / "model"  # its tokenizer is what a data file is encoded with
    train_bpe(training_texts(TRAIN_SPLIT), 400, model_dir)
    seen = []

    def capture(config):
        seen.append(config)
        raise ValueError("stopped before training")

    monkeypatch.setattr(pipelines.train, "run_train", capture)
    # No flow runs here: no need to start Prefect's API for it.
    monkeypatch.setattr(pipelines.cli.stages, "running_flows", contextlib.nullcontext)
    base = ["finetune", "--init-from", str(model_dir), "--data", str(TRAIN_SPLIT)]
    base += ["--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*base, "--format", "persona-chat"])
    assert result.exit_code == 2 and "stopped before training" in result.output
    (config,) = seen
    assert config.format == "persona-chat"

    tokens = pipelines.train.prepare_data.fn(config)
    tokenizer = load_tokenizer(tokens / "tokenizer")
    assert sum(read_meta(tokens).documents.values()) == 240  # one per dialogue
    first, _ = next(iter(sequential_windows(tokens, context=200, batch_size=1)))
    text = tokenizer.decode(first[0].tolist())
    assert text.startswith("Persona: ") and "\nThem: " in text and "\nYou: " in text

    bad = runner.invoke(app, [*base, "--format", "csv"])
    assert bad.exit_code == 2 and "format" in bad.output and "persona-chat" in bad.output
