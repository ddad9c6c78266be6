"""`gpt2lab evaluate --corpus`: each task's 8-gram overlap with a corpus, in MLflow and the
results file, and remembered in the workspace."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app
from tasks.evals.contamination import ngrams
from tasks.evals.registry import get_tasks
from tests.pipelines.test_evaluate_flow import tiny_model
from tests.tasks.evals.test_contamination import write_corpus

runner = CliRunner()


def test_evaluate_with_a_corpus_logs_contamination(
    workspace, prefect_harness, gpt2_vocab_dir, tmp_path: Path
):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    (lambada,) = get_tasks(["lambada"])
    rows = [json.loads(line) for line in lambada.data.local.read_text().splitlines()][:3]
    # Row 0 verbatim inside a page, row 1 reworded, row 2 absent.
    corpus = write_corpus(
        tmp_path / "corpus",
        [
            f"A story we liked. {rows[0]['text'].upper()}. The end.",
            "Every evening the old dog sat at the gate, waiting for the school bus at four.",
        ],
    )
    model = tiny_model(tmp_path / "model", gpt2_vocab_dir, seed=0)
    args = ["evaluate", "--model", str(model), "--tasks", "lambada", "--limit", "3"]
    result = runner.invoke(app, [*args, "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "evaluate"]
    (child,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.mlflow.runName = 'lambada'"
    )
    metrics = child.data.metrics
    assert metrics["contamination/rows"] == 3
    assert metrics["contamination/rows_overlapping"] == 1 / 3
    sizes = [len(ngrams(row["text"])) for row in rows]
    assert metrics["contamination/ngram_overlap"] == sizes[0] / sum(sizes)
    summary = json.loads((corpus / "corpus.json").read_text())
    assert child.data.tags["gpt2lab.lineage.corpus"] == summary["fingerprint"]

    table = client.download_artifacts(child.info.run_id, "examples.json", str(tmp_path))
    examples = json.loads(Path(table).read_text())
    overlap = [row[examples["columns"].index("overlap")] for row in examples["data"]]
    assert overlap == [1.0, 0.0, 0.0]

    (results_file,) = (workspace / "evals").glob("*.json")
    (entry,) = json.loads(results_file.read_text())["results"]
    assert (
        entry["contamination"]["rows"] == 3 and entry["contamination"]["rows_overlapping"] == 1 / 3
    )
    assert [example["overlap"] for example in entry["examples"]] == [1.0, 0.0, 0.0]
    assert len(list((workspace / "contamination").glob("lambada-v*.json"))) == 1
