"""The evaluate flow: tasks on a (tiny, untrained) model, results in MLflow, outputs cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from model import GPT, GPTConfig, load_tokenizer, save_checkpoint
from pipelines.cli import app
from pipelines.evaluate import EvaluateConfig, run_evaluate

runner = CliRunner()


def tiny_model(folder: Path, vocab_dir: Path, seed: int) -> Path:
    """A random tiny GPT-2 with GPT-2's tokenizer beside it: its outputs are noise, which
    is all these tests need (scores are checked against reference tools elsewhere)."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig.preset("tiny", block_size=512))
    return save_checkpoint(model, folder, tokenizer=load_tokenizer(vocab_dir))


def test_evaluate_logs_parent_and_task_runs_and_caches_outputs(
    workspace, prefect_harness, gpt2_vocab_dir, tmp_path
):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    model = tiny_model(tmp_path / "model", gpt2_vocab_dir, seed=0)
    config = EvaluateConfig(
        model=str(model), tasks=["wmt14-en-fr", "cnn-dailymail-tldr"], limit=3, batch_size=2
    )
    first = run_evaluate(config)
    by_task = {r["task"]: r for r in first.results}
    assert by_task["wmt14-en-fr"]["generated"] == 3 and "bleu" in by_task["wmt14-en-fr"]["scores"]
    tldr = by_task["cnn-dailymail-tldr"]["scores"]
    assert {"rouge1", "rouge2", "rougeL", "lede3/rouge1", "random3/rouge1"} <= set(tldr)

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    children = client.search_runs(
        [client.get_run(first.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.mlflow_run_id}'",
    )
    assert sorted(run.info.run_name for run in children) == ["cnn-dailymail-tldr", "wmt14-en-fr"]
    wmt = next(run for run in children if run.info.run_name == "wmt14-en-fr")
    assert wmt.data.tags["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "examples.json" in {a.path for a in client.list_artifacts(wmt.info.run_id)}
    saved = json.loads(first.results_file.read_text())
    assert [r["task"] for r in saved["results"]] == ["wmt14-en-fr", "cnn-dailymail-tldr"]

    # The same evaluation again: every output comes from the cache, unchanged.
    second = run_evaluate(config)
    for entry in second.results:
        assert (entry["generated"], entry["from_cache"]) == (0, 3)
    outputs = [[e["output"] for e in r["examples"]] for r in saved["results"]]
    again = json.loads(second.results_file.read_text())
    assert [[e["output"] for e in r["examples"]] for r in again["results"]] == outputs

    # Another checkpoint never receives the first one's outputs.
    other = tiny_model(tmp_path / "other", gpt2_vocab_dir, seed=1)
    third = run_evaluate(config.model_copy(update={"model": str(other)}))
    assert all(entry["generated"] == 3 for entry in third.results)


def test_an_unknown_task_lists_the_available_ones(tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--tasks", "wmt15"])
    assert result.exit_code == 2
    assert "unknown eval task 'wmt15'; available:" in result.output
    assert "wmt14-en-fr" in result.output


def test_evals_list_shows_the_tasks_and_paper_figures():
    result = runner.invoke(app, ["evals", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "cnn-dailymail-tldr" in result.output and "bleu 11.5" in result.output


@pytest.mark.parametrize("empty", [""])
def test_empty_generations_are_scored(empty):
    from tasks.evals.registry import get_tasks

    (task,) = get_tasks(["wmt14-en-fr"])
    assert task.score([empty], ["Bonjour."], [{}])["bleu"] == 0.0
