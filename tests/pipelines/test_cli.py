"""The `gpt2lab` command line, driven as a user would (typer's runner, real files)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from model import GPT, GPTConfig, save_checkpoint
from pipelines.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def gpt2_model_dir(tmp_path_factory, gpt2_vocab_dir):
    """A small random GPT-2 with the real GPT-2 vocabulary, tokenizer files beside it."""
    folder = tmp_path_factory.mktemp("cli") / "model"
    config = GPTConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=32)
    save_checkpoint(GPT(config), folder)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(gpt2_vocab_dir / name, folder / name)
    return folder


def test_tokenize_shows_pieces_and_ids(gpt2_vocab_dir):
    result = runner.invoke(app, ["tokenize", "--tokenizer", str(gpt2_vocab_dir), "Hello world"])
    assert result.exit_code == 0, result.output
    assert "15496" in result.output and "995" in result.output  # GPT-2's ids
    assert "␣world" in result.output  # the leading space belongs to the token, made visible
    assert "2 tokens, 11 bytes" in result.output


def test_tokenize_special_token_only_when_allowed(gpt2_vocab_dir):
    args = ["tokenize", "--tokenizer", str(gpt2_vocab_dir), "<|endoftext|>"]
    assert "50256" not in runner.invoke(app, args).output
    assert "50256" in runner.invoke(app, [*args, "--allow-special"]).output


def test_generate_streams_a_continuation(gpt2_model_dir):
    args = ["generate", "--model", str(gpt2_model_dir), "--prompt", "Once upon a time"]
    result = runner.invoke(app, [*args, "--max-new-tokens", "8", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Once upon a time")
    again = runner.invoke(app, [*args, "--max-new-tokens", "8", "--seed", "1"])
    assert again.output == result.output  # a seed makes it reproducible


def test_generate_show_probs_lists_top_5_alternatives(gpt2_model_dir):
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(gpt2_model_dir),
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "3",
            "--temperature",
            "0",
            "--show-probs",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ ")]
    assert len(rows) == 3
    for row in rows:
        step, chosen, prob, alternatives = (cell.strip() for cell in row.strip("│").split("│"))
        assert 0.0 < float(prob) <= 1.0
        assert len(alternatives.split("  ")) == 5


def test_generate_with_a_missing_model_is_a_one_line_error(tmp_path):
    result = runner.invoke(
        app,
        ["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "error:" in result.output and str(tmp_path / "nope") in result.output
    assert "Traceback" not in result.output


def test_a_missing_model_path_is_named_as_the_model_and_stops_evaluate_before_its_flow(
    tmp_path, monkeypatch
):
    import pipelines.evaluate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "workspace").mkdir()
    generate = runner.invoke(app, ["generate", "--model", "workspace/nope", "--prompt", "x"])
    assert generate.exit_code == 2
    assert generate.output.strip() == "error: no such checkpoint folder: workspace/nope"

    def no_flow(config):
        raise AssertionError("the flow started")

    monkeypatch.setattr(pipelines.evaluate, "run_evaluate", no_flow)
    evaluate = runner.invoke(app, ["evaluate", "--model", "workspace/nope", "--tasks", "lambada"])
    assert evaluate.exit_code == 2
    assert evaluate.output.strip() == "error: no such checkpoint folder: workspace/nope"


def test_generate_refuses_a_tokenizer_larger_than_the_model(tmp_path, gpt2_vocab_dir):
    save_checkpoint(
        GPT(GPTConfig(vocab_size=100, block_size=16, n_layer=1, n_head=1, n_embd=8)), tmp_path / "m"
    )
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tmp_path / "m"),
            "--tokenizer",
            str(gpt2_vocab_dir),
            "--prompt",
            "x",
        ],
    )
    assert result.exit_code == 2
    assert "tokenizer has 50257 tokens but the model only 100" in result.output


def test_evals_list_shows_every_task_name_whole():
    from tasks.evals.registry import all_tasks

    output = runner.invoke(app, ["evals", "list"], env={"COLUMNS": "80"}).output
    cells = {cell.strip() for line in output.splitlines() for cell in line.split("│")}
    assert set(all_tasks()) <= cells  # each name in one cell, not cut ("cnn-dailymail-…")


def test_output_that_is_not_a_terminal_keeps_long_lines_whole(capsys):
    from pipelines.cli.common import make_console

    command = "gpt2lab report " + "/a/very/long/path/to/a/workspace/run-folder" * 4
    make_console().print(command)  # pytest captures stdout: not a terminal
    assert capsys.readouterr().out == command + "\n"


def test_report_takes_a_run_name_as_well_as_an_id(workspace):
    import time

    from mlflow.tracking import MlflowClient

    from pipelines.cli.runs import run_id_for
    from pipelines.workspace import mlflow_tracking_uri

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    experiment = client.create_experiment("end-to-end-test")
    made = []
    for _ in range(2):
        run = client.create_run(experiment, run_name="demo", tags={"gpt2lab.kind": "end-to-end"})
        made.append(run.info.run_id)
        time.sleep(0.01)  # a later start time
    client.create_run(experiment, run_name="demo-stage")  # another name: never matched
    assert run_id_for(client, "demo") == made[-1]  # the newest of that name
    assert run_id_for(client, made[0]) == made[0]  # an id, as it is
    with pytest.raises(ValueError, match="no end-to-end or evaluate run named 'nope'"):
        run_id_for(client, "nope")
