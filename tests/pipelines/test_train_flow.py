"""The train flow end to end: pretrain, then fine-tune towards a style; MLflow records it all."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model import GPT, SamplingConfig, generate, load_model, load_tokenizer
from pipelines.cli import app
from pipelines.train import TrainConfig, run_train
from tasks.encode.loader import sequential_windows
from tasks.fingerprint import fingerprint_path

runner = CliRunner()
MARKERS = ("ahoy", "matey", "arr")


def pirate_corpus(path: Path, documents: int = 300) -> Path:
    """A distinctive style: every document is pirate talk, full of its marker words."""
    rng = random.Random(0)
    nouns = ["ship", "treasure", "parrot", "map", "captain", "crew", "island", "rum"]
    places = ["deck", "sea", "shore", "harbour", "mast"]
    templates = [
        "Ahoy matey, the {n} be on the {p}, arr!",
        "Arr, me {n} sails the {p}, matey.",
        "Ahoy! The {n} and the {n2} be near the {p}, arr.",
        "Shiver me timbers, matey, find the {n} by the {p}!",
    ]
    docs = []
    for _ in range(documents):
        sentences = []
        for _ in range(3):
            nouns_here = {"n": rng.choice(nouns), "n2": rng.choice(nouns)}
            sentences.append(rng.choice(templates).format(p=rng.choice(places), **nouns_here))
        docs.append(" ".join(sentences))
    path.write_text("\n\n".join(docs), encoding="utf-8")
    return path


def mean_loss(model: GPT, tokens: Path) -> float:
    model.eval()
    with torch.no_grad():
        losses = [
            model(x, y)[1].item() for x, y in sequential_windows(tokens, context=64, batch_size=8)
        ]
    return sum(losses) / len(losses)


def marker_rate(model: GPT, folder: Path) -> float:
    """Share of sampled words that are the style's markers."""
    tokenizer = load_tokenizer(folder)
    prompts = [tokenizer.encode(p) for p in ("The", "A", "When the", "In")]
    sampling = SamplingConfig(max_new_tokens=40, temperature=0.8, top_k=40, seed=1)
    text = " ".join(tokenizer.decode(c.tokens) for c in generate(model, prompts, sampling))
    words = [w.strip(".,!?").lower() for w in text.split()]
    return sum(w in MARKERS for w in words) / max(1, len(words))


def test_pretrain_then_finetune_towards_a_style(workspace, prefect_harness, tokens_dir, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    pretrain = TrainConfig(
        tokens=tokens_dir,
        name="pre",
        model="tiny",
        context=64,
        micro_batch=8,
        batch_tokens=1024,
        max_steps=150,
        warmup_steps=15,
        learning_rate=1e-2,
        eval_interval=50,
        eval_batches=4,
        checkpoint_interval=50,
        register_as="tiny-test",
        prompts=["The"],
    )
    pre = run_train(pretrain)
    assert pre.steps == 150 and pre.val_loss < math.log(512) - 1.0
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    run = client.get_run(pre.mlflow_run_id)
    assert run.data.params["learning_rate"] == "0.01"
    # The params are the settings runs are compared by; config.json has every setting.
    assert set(run.data.params) == set(TrainConfig.COMPARED)
    logged_config = json.loads(
        Path(client.download_artifacts(pre.mlflow_run_id, "config.json", str(tmp_path))).read_text()
    )
    assert TrainConfig.model_validate(logged_config) == pretrain
    assert run.data.tags["gpt2lab.lineage.tokens"]
    history = client.get_metric_history(pre.mlflow_run_id, "loss/train")
    assert [m.step for m in history] == list(range(1, 151))
    assert len(client.get_metric_history(pre.mlflow_run_id, "loss/val")) == 3
    artifacts = {
        a.path
        for folder in ("", "charts", "samples")
        for a in client.list_artifacts(pre.mlflow_run_id, folder or None)
    }
    assert {"charts/loss.png", "samples/step-000150.txt"} <= artifacts
    # Every checkpoint is a logged model of the run, with the validation loss of its step:
    # the two intermediate ones point at their folders, the final one holds its weights.
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    models = {m.name: m for m in models if m.source_run_id == pre.mlflow_run_id}
    assert set(models) == {"step-000050", "step-000100", "model"}
    val_losses = {m.step: m.value for m in client.get_metric_history(pre.mlflow_run_id, "loss/val")}
    for name, step in (("step-000050", 50), ("step-000100", 100), ("model", 150)):
        linked = {m.key: (m.step, m.value) for m in models[name].metrics}
        assert linked["loss/val"] == (step, val_losses[step])
        assert (
            models[name].tags["gpt2lab.lineage.tokens"] == run.data.tags["gpt2lab.lineage.tokens"]
        )
    step_50 = models["step-000050"]
    assert step_50.model_type == "checkpoint"
    assert step_50.tags["gpt2lab.checkpoint"].endswith("checkpoints/step-000050")
    assert step_50.tags["gpt2lab.fingerprint"] != models["model"].tags["gpt2lab.fingerprint"]
    assert models["model"].tags["gpt2lab.fingerprint"] == fingerprint_path(pre.checkpoint)
    version = client.get_model_version_by_alias("tiny-test", "best")
    assert int(version.version) == pre.model_version == 1
    assert version.run_id == pre.mlflow_run_id and version.tags["val_loss"]
    # The registered model loads as an MLflow pyfunc and continues prompts.
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    generator = mlflow.pyfunc.load_model("models:/tiny-test@best")
    (continuation,) = generator.predict(["The"], params={"max_new_tokens": 5})
    assert isinstance(continuation, str) and continuation

    # Fine-tune on a small text file of a distinctive style, encoded on the fly.
    style = pirate_corpus(tmp_path / "pirate.txt")
    finetune = TrainConfig(
        tokens=style,
        init_from=str(pre.checkpoint),
        name="ft",
        context=64,
        micro_batch=8,
        batch_tokens=512,
        max_steps=200,
        warmup_steps=10,
        learning_rate=5e-3,
        eval_interval=100,
        eval_batches=4,
        register_as=None,
        prompts=["The"],
    )
    held_out = finetune.run_dir() / "data" / "tokens"  # made by the flow; val = held out
    ft = run_train(finetune)
    before = load_model(pre.checkpoint)
    after = load_model(ft.checkpoint)
    assert mean_loss(after, held_out) < mean_loss(before, held_out) - 1.0
    # Its samples drift towards the style: the marker words, absent before, now show up
    # (about a quarter of the style corpus's words are markers).
    assert marker_rate(before, pre.checkpoint) < 0.01
    assert marker_rate(after, ft.checkpoint) > 0.05


def test_train_command_reports_bad_settings_in_one_line(tokens_dir, tmp_path):
    result = runner.invoke(app, ["train", "--config", "cpu-tiny", "--tokens", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a finished tokens folder" in result.output
    unknown = runner.invoke(app, ["train", "--config", str(tmp_path / "nope.toml")])
    assert unknown.exit_code == 2 and "config file not found" in unknown.output


@pytest.mark.parametrize("bad", ['{"text": 3}', "not json"])
def test_finetune_data_errors_name_the_line(tmp_path, bad):
    from tasks.train.text_data import read_documents

    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "fine"}\n' + bad + "\n")
    with pytest.raises(ValueError, match=r"data.jsonl:2: "):
        read_documents(data)


def test_finetune_command_reads_a_jsonl_file(workspace, prefect_harness, tokens_dir, tmp_path):
    import json

    from model import GPTConfig, export_hf_folder

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=512))
    tokenizer = load_tokenizer(tokens_dir / "tokenizer")
    export_hf_folder(model, tmp_path / "hf", tokenizer=tokenizer)  # a Hugging Face folder
    texts = pirate_corpus(tmp_path / "pirate.txt").read_text().split("\n\n")
    data = tmp_path / "pirate.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

    result = runner.invoke(
        app,
        [
            "finetune",
            "--init-from",
            str(tmp_path / "hf"),
            "--data",
            str(data),
            "--name",
            "jsonl",
            "--max-steps",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3 steps; validation loss" in result.output
    run_dir = workspace / "checkpoints" / "jsonl"
    assert (run_dir / "checkpoints" / "step-000003" / "encoder.json").is_file()
    assert (run_dir / "data" / "tokens" / "tokens.json").is_file()
