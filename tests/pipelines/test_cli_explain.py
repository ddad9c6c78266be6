"""`gpt2lab explain`: the page from a model folder, one-line errors, and `--log` putting the
page beside the model's run (a registered model) or in a run of its own."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

from .test_evaluate_flow import tiny_model
from .test_model_refs import register_checkpoint

runner = CliRunner()
PROMPT = "Masked self-attention looks back <never> forward."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, gpt2_vocab_dir):
    return tiny_model(tmp_path_factory.mktemp("explain") / "model", gpt2_vocab_dir, seed=0)


def _explain(*args: str):
    return runner.invoke(app, ["explain", "--prompt", PROMPT, "--device", "cpu", *args])


def test_explain_writes_the_page(model_dir, tmp_path):
    out = tmp_path / "page" / "explain.html"
    args = ["--model", str(model_dir), "--out", str(out), "--steps", "3", "--top-k", "20"]
    result = _explain(*args, "--word", "self", "--layer", "1", "--head", "1")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    page = out.read_text(encoding="utf-8")
    assert "&lt;never&gt;" in page and "<never>" not in page
    assert "How BPE built “␣self”" in page
    assert "layer 1, head 1" in page
    assert "top-k 20" in page and "at most 3 new tokens" in page


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--word", "zebra"], "error: word 'zebra' is not one of the prompt's words"),
        (
            ["--head", "9"],
            "error: head 9 is out of range: the model has layers 0..1, each with heads 0..1",
        ),
    ],
)
def test_a_bad_choice_is_one_line(model_dir, tmp_path, args, problem):
    result = _explain("--model", str(model_dir), "--out", str(tmp_path / "x.html"), *args)
    assert result.exit_code != 0
    assert result.output.strip().startswith(problem), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_log_puts_the_page_in_a_run_of_its_own_for_a_folder(workspace, model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri
    from tasks.fingerprint import fingerprint_path

    out = tmp_path / "explain.html"
    result = _explain("--model", str(model_dir), "--out", str(out), "--steps", "2", "--log")
    assert result.exit_code == 0, result.output
    run_id = result.output.split("logged to MLflow run ")[1].split()[0]
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "explain"
    assert run.data.tags["gpt2lab.lineage.checkpoint"] == fingerprint_path(model_dir)
    assert [a.path for a in client.list_artifacts(run_id, "explain")] == ["explain/explain.html"]


def test_log_puts_the_page_beside_a_registered_model(workspace, model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    register_checkpoint(model_dir, "tiny", val_loss=2.0)
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    train_run = client.get_model_version("tiny", "1").run_id

    out = tmp_path / "explain.html"
    result = _explain("--model", "models:/tiny@best", "--out", str(out), "--steps", "2", "--log")
    assert result.exit_code == 0, result.output
    assert f"logged to MLflow run {train_run}" in result.output
    logged = [a.path for a in client.list_artifacts(train_run, "explain")]
    assert logged == ["explain/explain.html"]
