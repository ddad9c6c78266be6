"""Registered models (models:/NAME@ALIAS, models:/NAME/VERSION) wherever a model is named,
and the device an evaluation runs on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.evaluate import EvaluateConfig, run_evaluate
from pipelines.model_refs import ModelReferenceError, resolve_device, resolve_model
from tasks.fingerprint import fingerprint_path
from tasks.train.loop import TrainResult

from .test_evaluate_flow import tiny_model

runner = CliRunner()


def register_checkpoint(checkpoint: Path, name: str, val_loss: float, val_data: str = "") -> int:
    """Register `checkpoint` as the train flow does at the end of a run (its validation
    loss measured on the data with fingerprint `val_data`)."""
    from pipelines.tracking import tracked_run
    from pipelines.train import register

    result = TrainResult(
        run_dir=checkpoint.parent,
        steps=1,
        resumed_from=0,
        last_checkpoint=checkpoint,
        best_checkpoint=checkpoint,
        best_val_loss=val_loss,
        val_loss=val_loss,
    )
    with tracked_run("train", run_name=name):
        return register(result, name, val_data)


def test_a_reference_resolves_to_a_downloaded_version(workspace, gpt2_vocab_dir, tmp_path):
    first = tiny_model(tmp_path / "first", gpt2_vocab_dir, seed=0)
    second = tiny_model(tmp_path / "second", gpt2_vocab_dir, seed=1)
    assert register_checkpoint(first, "tiny", val_loss=2.0) == 1

    best = Path(resolve_model("models:/tiny@best"))
    assert best.is_relative_to(workspace / "registered-models" / "tiny" / "1")
    assert fingerprint_path(best) == fingerprint_path(first)
    assert resolve_model(str(first)) == str(first)  # a path (or hub id) passes through

    # A better version takes the alias: the alias now fetches it; version 1 stays put.
    assert register_checkpoint(second, "tiny", val_loss=1.0) == 2
    moved = Path(resolve_model("models:/tiny@best"))
    assert moved.is_relative_to(workspace / "registered-models" / "tiny" / "2")
    assert fingerprint_path(moved) == fingerprint_path(second)
    assert resolve_model("models:/tiny/latest") == str(moved)
    assert resolve_model("models:/tiny/1") == str(best)

    # Downloaded once: with the registry's copy gone, the version still resolves locally.
    shutil.rmtree(workspace / "mlartifacts")
    assert resolve_model("models:/tiny/1") == str(best)


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("models:/tiny@nope", "model 'tiny' has no alias 'nope'"),
        ("models:/tiny/7", "model 'tiny' has no version 7"),
        ("models:/other@best", "no registered model 'other'"),
        ("models:/tiny", "not a registered model reference"),
    ],
)
def test_an_unknown_reference_is_one_line_naming_it_and_the_store(
    workspace, gpt2_vocab_dir, tmp_path, reference, problem
):
    register_checkpoint(tiny_model(tmp_path / "m", gpt2_vocab_dir, seed=0), "tiny", 2.0)
    with pytest.raises(ModelReferenceError) as raised:
        resolve_model(reference)
    message = str(raised.value)
    assert message.startswith(f"{reference}: ") and problem in message
    assert "\n" not in message
    if reference != "models:/tiny":
        assert f"in the MLflow store sqlite:///{workspace}/mlflow.db" in message


def test_evaluate_and_generate_from_a_registered_model(
    workspace, prefect_harness, gpt2_vocab_dir, tmp_path
):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    folder = tiny_model(tmp_path / "model", gpt2_vocab_dir, seed=0)
    register_checkpoint(folder, "tiny", val_loss=2.0)
    config = EvaluateConfig(model=str(folder), tasks=["lambada"], limit=3, use_cache=False)

    def outputs(result) -> dict:
        saved = json.loads(result.results_file.read_text())
        return {r["task"]: [e["raw_output"] for e in r["examples"]] for r in saved["results"]}

    direct = run_evaluate(config)
    by_alias = run_evaluate(config.model_copy(update={"model": "models:/tiny@best"}))
    by_version = run_evaluate(
        config.model_copy(update={"model": "models:/tiny/1", "use_cache": True})
    )
    for other in (by_alias, by_version):
        assert [r["scores"] for r in other.results] == [r["scores"] for r in direct.results]
        assert outputs(other) == outputs(direct)

    run = MlflowClient(tracking_uri=mlflow_tracking_uri()).get_run(by_alias.mlflow_run_id)
    assert run.data.params["model"] == "models:/tiny@best"
    assert Path(run.data.params["model_folder"]).is_relative_to(workspace / "registered-models")
    assert run.data.tags["gpt2lab.lineage.checkpoint"] == fingerprint_path(folder)
    assert run.data.params["device"] == "auto"
    assert run.data.params["device_used"] == ("cuda" if torch.cuda.is_available() else "cpu")

    def generated(model: str) -> str:
        args = ["generate", "--model", model, "--prompt", "Hello", "--temperature", "0"]
        result = runner.invoke(app, [*args, "--max-new-tokens", "6", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return result.output

    assert generated("models:/tiny@best") == generated(str(folder))

    unknown = runner.invoke(app, ["evaluate", "--model", "models:/tiny@nope", "--tasks", "lambada"])
    assert unknown.exit_code == 2
    assert "models:/tiny@nope: model 'tiny' has no alias 'nope'" in unknown.output
    assert "mlflow.db" in unknown.output and "Traceback" not in unknown.output


def test_finetune_and_compare_start_from_a_registered_model(
    workspace, prefect_harness, tokens_dir, tmp_path
):
    from mlflow.tracking import MlflowClient

    from model import GPT, GPTConfig, load_tokenizer, save_checkpoint
    from pipelines.workspace import mlflow_tracking_uri

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=512, block_size=128))
    tokenizer = load_tokenizer(tokens_dir / "tokenizer")
    register_checkpoint(save_checkpoint(model, tmp_path / "m", tokenizer=tokenizer), "small", 3.0)

    args = ["finetune", "--init-from", "models:/small@best", "--data", str(tokens_dir)]
    result = runner.invoke(app, [*args, "--name", "ft", "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    params = MlflowClient(tracking_uri=mlflow_tracking_uri()).get_run(run_id).data.params
    assert params["init_from"] == "models:/small@best"
    assert params["init_from_folder"] == resolve_model("models:/small/1")

    checkpoint = workspace / "checkpoints" / "ft" / "checkpoints" / "step-000002"
    args = ["compare", "--models", "models:/small/1", str(checkpoint), "--n", "2"]
    made = runner.invoke(app, [*args, "--annotators", "0"])
    assert made.exit_code == 0, made.output
    # Labelled by the reference, not by the download folder's path.
    assert "batch small_1-vs-step-000002-" in made.output


def test_auto_is_cuda_only_where_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device cuda: torch finds no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_asking_for_cuda_without_a_gpu_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in (
        ["evaluate", "--model", str(tmp_path), "--tasks", "lambada", "--device", "cuda"],
        ["generate", "--model", str(tmp_path), "--prompt", "Hi", "--device", "cuda"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert "error: device cuda: torch finds no CUDA GPU" in result.output
        assert len(result.output.strip().splitlines()) == 1
    bad = runner.invoke(app, ["evaluate", "--model", "m", "--tasks", "lambada", "--device", "tpu"])
    assert bad.exit_code == 2 and "device: Input should be 'auto', 'cpu' or 'cuda'" in bad.output
