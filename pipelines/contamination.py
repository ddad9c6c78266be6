"""Contamination in the evaluate flow: each task's 8-gram overlap with a training corpus.

The measurement itself is `tasks/evals/contamination.py` (the GPT-2 paper's section 4).
Here: the Prefect task that runs it, with its progress in the Prefect UI and its results
cached in `<workspace>/contamination/` (a repeated evaluation does not scan the corpus
again), and what a task's MLflow run records of it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from pipelines.tracking import log_metrics_batch
from pipelines.workspace import workspace_dir
from reports.mlflow_names import (
    CONTAMINATION_NGRAM_OVERLAP,
    CONTAMINATION_ROWS,
    CONTAMINATION_ROWS_OVERLAPPING,
    EXAMPLE_OVERLAP,
    lineage_tag,
)
from tasks.evals.contamination import (
    Contamination,
    ContaminationCache,
    ScanProgress,
    tasks_contamination,
)
from tasks.evals.data import Source
from tasks.evals.registry import get_tasks

CACHE_FOLDER = "contamination"  # under the workspace: one small JSON file per task and corpus


@task(name="contamination")
def contamination_task(
    names: list[str], corpus: Path, source: Source = "local", limit: int | None = None
) -> dict[str, Contamination]:
    """Each named task's contamination by `corpus`, by task name (one scan for all the
    tasks whose result is not cached yet)."""
    logger = get_run_logger()
    progress = _ScanReporter(corpus, logger)
    cache = ContaminationCache(workspace_dir() / CACHE_FOLDER)
    found = tasks_contamination(
        get_tasks(names), corpus, cache, source=source, limit=limit, progress=progress
    )
    progress.done()
    for name, value in found.items():
        logger.info(
            "%s: %.2f%% of %d-grams and %.1f%% of %d rows found in %s",
            name,
            100 * value.ngram_overlap,
            value.n,
            100 * value.rows_overlapping,
            value.n_rows,
            corpus,
        )
    return found


class _ScanReporter:
    """Scan progress in the Prefect UI (a progress artifact, made only if a scan happens)
    and the scan speed in the log. Updates at most once a percent: a few GB of corpus is
    hundreds of thousands of documents."""

    def __init__(self, corpus: Path, logger: Any) -> None:
        self.corpus, self.logger = corpus, logger
        self.artifact: Any = None
        self.shown = -1
        self.started = time.perf_counter()
        self.last: ScanProgress | None = None

    def __call__(self, progress: ScanProgress) -> None:
        if self.artifact is None:
            description = f"8-gram scan of {self.corpus}"
            self.artifact = create_progress_artifact(0.0, description=description)
        self.last = progress
        percent = int(100 * progress.documents / max(progress.total, 1))
        if percent > self.shown:
            self.shown = percent
            update_progress_artifact(self.artifact, float(percent))

    def done(self) -> None:
        if self.last is None:  # every result came from the cache
            self.logger.info("contamination: cached results for corpus %s", self.corpus)
            return
        seconds = time.perf_counter() - self.started
        megabytes = self.last.bytes / 1e6
        self.logger.info(
            "scanned %d documents, %.1f MB of text, in %.1f s (%.1f MB/s)",
            self.last.documents,
            megabytes,
            seconds,
            megabytes / max(seconds, 1e-9),
        )


def contamination_metrics(value: Contamination) -> dict[str, float]:
    """The figures a task's MLflow run records."""
    return {
        CONTAMINATION_NGRAM_OVERLAP: value.ngram_overlap,
        CONTAMINATION_ROWS_OVERLAPPING: value.rows_overlapping,
        CONTAMINATION_ROWS: value.n_rows,
    }


def log_contamination(run: mlflow.ActiveRun, value: Contamination) -> None:
    """Record a task's contamination in its (open) MLflow run, with the corpus lineage."""
    log_metrics_batch(run, contamination_metrics(value))
    mlflow.set_tag(lineage_tag("corpus"), value.corpus)


def add_overlap(examples: list[dict[str, Any]], value: Contamination) -> None:
    """Give each example (one per row, in row order) its share of 8-grams in the corpus."""
    if len(examples) != value.n_rows:
        raise ValueError(
            f"contamination: {value.n_rows} rows measured but {len(examples)} examples scored"
        )
    for example, row in zip(examples, value.rows, strict=True):
        example[EXAMPLE_OVERLAP] = row.share


def contamination_entry(value: Contamination | None) -> dict[str, Any]:
    """What a task's entry in the results JSON says about contamination ({} without it)."""
    if value is None:
        return {}
    summary = {k: v for k, v in value.to_dict().items() if k != "per_row"}
    return {"contamination": summary}
