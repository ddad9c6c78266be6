"""The `corpus` flow: a link dump in, a clean, deduplicated dataset out (WebText style).

    read links -> robots.txt -> batches of [fetch -> extract -> filter] -> dedup -> export

Every URL's fate is in the manifest; the funnel, the drop reasons, charts and samples go
to MLflow. Killed and started again with the same config, it continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import tempfile
from itertools import islice
from pathlib import Path
from typing import Literal

import mlflow
from prefect import flow, get_run_logger, task, unmapped
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from pipelines.tracking import log_metrics_batch, tracked_run
from reports.corpus_charts import funnel_chart, length_histogram
from reports.mlflow_names import (
    DROP_REASONS_TABLE,
    DROPS_PREFIX,
    SAMPLES_KEPT_TABLE,
    funnel_metric,
)
from tasks.corpus.dedup import DedupSettings
from tasks.corpus.export import ExportResult
from tasks.corpus.links import LinkRules
from tasks.corpus.process import (
    FunnelSettings,
    deduplicate,
    export,
    plan_batches,
    process_batch,
    read_links,
    read_robots,
)
from tasks.corpus.store import CorpusStore, causes
from tasks.fingerprint import fingerprint_path

FUNNEL_STAGES = ("links", "fetch", "extract", "filter", "dedup")

# The flow's Prefect tasks: the plain functions of tasks/corpus/process.py, named for the UI.
read_links_task = task(read_links, name="read-links")
read_robots_task = task(read_robots, name="read-robots")
plan_batches_task = task(plan_batches, name="plan-batches")
process_batch_task = task(
    process_batch, name="process-batch", task_run_name="batch {batch.first}-{batch.last}"
)
deduplicate_task = task(deduplicate, name="deduplicate")
export_task = task(export, name="export")


class CorpusConfig(FunnelSettings):
    """Settings of the corpus flow (the CLI's options and `--config` TOML tables)."""

    links: list[Path] = Field(min_length=1, description="link dumps / URL lists to read")
    out: Path = Field(description="output folder: dataset, manifest, state")
    link_rules: LinkRules = LinkRules()
    dedup: DedupSettings = DedupSettings()
    batch_size: int = Field(64, ge=1, description="links per task (one Prefect task each)")
    concurrent_batches: int = Field(
        2,
        ge=1,
        description="batches in flight at once with the default runner: one can "
        "fetch while another extracts; more only adds threads and memory",
    )
    runner: Literal["default", "dask"] = "default"
    dask_workers: int = Field(2, ge=1)


class CorpusResult(BaseModel):
    dataset: Path
    manifest: Path
    fingerprint: str
    documents: int
    counts: dict[str, int]
    mlflow_run_id: str


def funnel(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Records left after each stage, from the store's "<fate>.<stage>.<reason>" counts."""
    left = counts.get("total", 0)
    steps = [("links read", left)]
    names = {
        "links": "link rules",
        "fetch": "fetched",
        "extract": "extracted",
        "filter": "filters",
        "dedup": "dedup",
    }
    for stage in FUNNEL_STAGES:
        left -= sum(cause.count for cause in causes(counts) if cause.stage == stage)
        steps.append((f"after {names[stage]}", left))
    return steps


@flow(name="corpus")
def corpus_flow(config: CorpusConfig) -> CorpusResult:
    logger = get_run_logger()
    counts = read_links_task(config.links, config.link_rules, config.out)
    read_robots_task(config.out, config.fetch)
    batches = plan_batches_task(config.out, config.batch_size)
    logger.info(
        "%d links, %d to fetch or finish in %d batches",
        counts["total"],
        counts["pending"] + counts["fetched"],
        len(batches),
    )
    settings = FunnelSettings(fetch=config.fetch, extract=config.extract, filters=config.filters)
    futures = process_batch_task.map(unmapped(config.out), batches, unmapped(settings))
    for done, future in enumerate(futures, start=1):
        summary = future.result()
        logger.info(
            "batch %d/%d: %d fetched, %d kept", done, len(batches), summary.fetched, summary.kept
        )
    deduplicate_task(config.out, config.dedup)
    exported = export_task(config.out)
    final_counts, run_id = log_corpus_run(config, exported)
    return CorpusResult(
        dataset=exported.dataset_path,
        manifest=exported.manifest_path,
        fingerprint=exported.fingerprint,
        documents=exported.n_documents,
        counts=final_counts,
        mlflow_run_id=run_id,
    )


def log_corpus_run(
    config: CorpusConfig, exported: ExportResult, samples: int = 20
) -> tuple[dict[str, int], str]:
    """One MLflow run: funnel metrics, drop reasons, charts and sample documents.
    Returns the store's final counts and the run id."""
    # One pass over the store, keeping only lengths and a few samples (bounded memory).
    with CorpusStore(config.out) as store:
        counts = store.counts()
        lengths, documents = [], []
        for doc in store.iter_documents():
            lengths.append(len(doc.text.split()))
            if len(documents) < samples:
                documents.append(doc)
        dropped = list(islice((f for f in store.fates() if f.fate != "kept"), samples))
    lineage = {"corpus": exported.fingerprint}
    lineage.update({f"links.{p.name}": fingerprint_path(p) for p in config.links})
    params = config.model_dump(mode="json", exclude={"links", "out"})
    with tracked_run("corpus", lineage=lineage, params=params) as run:
        stages = funnel(counts)
        log_metrics_batch(run, {funnel_metric(i, name): n for i, (name, n) in enumerate(stages)})
        drops = causes(counts)
        log_metrics_batch(run, {f"{DROPS_PREFIX}{cause.key}": cause.count for cause in drops})
        _log_rows([dataclasses.asdict(cause) for cause in drops], DROP_REASONS_TABLE)
        kept_rows = [
            {"idx": d.idx, "url": d.url, "title": d.title or "", "text": d.text[:500]}
            for d in documents
        ]
        _log_rows(kept_rows, SAMPLES_KEPT_TABLE)
        dropped_rows = [
            {
                "idx": f.idx,
                "url": f.url or f.raw_url or "",
                "fate": f.fate,
                "stage": f.stage or "",
                "reason": f.reason or "",
                "detail": f.detail or "",
            }
            for f in dropped
        ]
        _log_rows(dropped_rows, "samples_dropped.json")
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(funnel_chart(stages, Path(tmp) / "funnel.png")), "charts")
            mlflow.log_artifact(str(length_histogram(lengths, Path(tmp) / "lengths.png")), "charts")
        return counts, run.info.run_id


def _log_rows(rows: list[dict], name: str) -> None:
    """Log rows as an MLflow table (it takes columns); an empty table is not logged."""
    if rows:
        mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, name)


def run_corpus(config: CorpusConfig) -> CorpusResult:
    """Run the flow with the task runner the config asks for."""
    if config.runner == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        # Dask workers are daemonic by default, and a daemonic process may not start
        # children: the extraction pool (which enforces the per-page time limit) needs to.
        dask.config.set({"distributed.worker.daemon": False})

        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": config.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
        return corpus_flow.with_options(task_runner=runner)(config)
    # Prefect's default thread pool is unbounded: every batch of a million-link dump
    # would start at once, each with its own event loop and HTTP client.
    runner = ThreadPoolTaskRunner(max_workers=config.concurrent_batches)
    return corpus_flow.with_options(task_runner=runner)(config)
