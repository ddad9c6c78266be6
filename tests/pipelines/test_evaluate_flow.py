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
    tldr = by_task["cnn-dailymail-tldr"]
    assert {"rouge1", "rougeLsum", "r_avg", "lede3/r_avg", "random3/rouge1"} <= set(tldr["scores"])
    # Every score has n and an interval; the paper's figure says which size it is for: this
    # tiny model is compared with the smallest, and Table 4 exists for 1542M alone.
    assert tldr["rows"] == 3 and set(tldr["intervals"]) == set(tldr["scores"])
    r_avg = tldr["beside_paper"]["r_avg"]
    assert (r_avg["model_size"], r_avg["paper_size"], r_avg["same_size"]) == (
        "117M",
        "1542M",
        False,
    )
    assert r_avg["value"] == pytest.approx(21.40) and "only for 1542M" in r_avg["note"]

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    children = client.search_runs(
        [client.get_run(first.mlflow_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.mlflow_run_id}'",
    )
    assert sorted(run.info.run_name for run in children) == ["cnn-dailymail-tldr", "wmt14-en-fr"]
    wmt = next(run for run in children if run.info.run_name == "wmt14-en-fr")
    assert wmt.data.tags["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "examples.json" in {a.path for a in client.list_artifacts(wmt.info.run_id)}
    low, high = (wmt.data.metrics[f"bleu/ci95_{end}"] for end in ("low", "high"))
    assert low <= wmt.data.metrics["bleu"] <= high and wmt.data.metrics["rows"] == 3
    parent = client.get_run(first.mlflow_run_id)
    assert parent.data.tags["gpt2lab.kind"] == "evaluate"
    table = client.list_artifacts(first.mlflow_run_id)
    assert {"results_table.json", "results.md"} <= {a.path for a in table}
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


def test_a_baseline_is_compared_paired_and_both_runs_report_side_by_side(
    workspace, prefect_harness, gpt2_vocab_dir, tmp_path
):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri
    from reports.run_report import collect, compare, render_markdown

    model = tiny_model(tmp_path / "model", gpt2_vocab_dir, seed=0)
    other = tiny_model(tmp_path / "other", gpt2_vocab_dir, seed=1)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model),
            "--tasks",
            "lambada,wikitext2-perplexity",
            "--limit",
            "4",
            "--baseline",
            str(other),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "rows scored per task: 3, 4" in result.output  # wikitext has 3 documents
    assert "Paired with" in result.output and "word_perplexity" in result.output
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    (first, *_) = client.search_runs(
        client.search_experiments(filter_string="name = 'evaluate'")[0].experiment_id,
        filter_string="tags.`gpt2lab.kind` = 'evaluate'",
        order_by=["start_time DESC"],
    )
    report = collect(first.info.run_id, client)
    lambada = next(t for t in report.stage("evaluate").tasks if t.task == "lambada")
    assert lambada.rows == 4 and lambada.beside_paper["accuracy"]["paper_size"] == "117M"
    markdown = render_markdown(report)
    assert "| lambada | accuracy |" in markdown and "0.4599 (117M)" in markdown
    task_runs = client.search_runs(
        first.info.experiment_id, filter_string=f"tags.mlflow.parentRunId = '{first.info.run_id}'"
    )
    paired = next(r for r in task_runs if r.info.run_name == "lambada").data.metrics
    assert 0 < paired["vs_baseline/perplexity/p_value"] <= 1

    # The baseline alone, then both evaluate runs side by side in one report.
    again = runner.invoke(
        app, ["evaluate", "--model", str(other), "--tasks", "lambada", "--limit", "4"]
    )
    assert again.exit_code == 0, again.output
    (second, *_) = client.search_runs(
        first.info.experiment_id,
        filter_string="tags.`gpt2lab.kind` = 'evaluate'",
        order_by=["start_time DESC"],
    )
    _, side_by_side = compare([first.info.run_id, second.info.run_id], client)
    row = next(line for line in side_by_side.splitlines() if line.startswith("| lambada: accuracy"))
    assert row.count("(") >= 3  # the paper's figure and both runs' intervals
    assert "| eval rows scored |" in side_by_side


def test_an_unknown_task_lists_the_available_ones(tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--tasks", "wmt15"])
    assert result.exit_code == 2
    assert "unknown eval task 'wmt15'; available:" in result.output
    assert "wmt14-en-fr" in result.output


def test_evals_list_shows_the_tasks_and_paper_figures():
    result = runner.invoke(app, ["evals", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "cnn-dailymail-tldr" in result.output and "bleu 11.5 (1542M)" in result.output
    assert "accuracy 0.4599 (117M), 0.5548 (345M)" in result.output


@pytest.mark.parametrize("empty", [""])
def test_empty_generations_are_scored(empty):
    from tasks.evals.registry import get_tasks

    (task,) = get_tasks(["wmt14-en-fr"])
    assert task.score([empty], ["Bonjour."], [{}])["bleu"] == 0.0
