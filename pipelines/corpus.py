"""The `corpus` flow: a link dump in, a clean, deduplicated dataset out (WebText style).

    read links -> shards by host -> per shard [robots.txt -> batches of
    [fetch -> extract -> filter]] -> collect -> dedup -> export

Shards run as Prefect tasks on the chosen task runner: threads here (the default), a local
Dask cluster (`runner = "dask"`), or an existing Dask cluster (`dask_address`); their state
lives under `shared` (a folder or fsspec URL every worker reaches), see tasks/corpus/shards.py.

Every URL's fate is in the manifest; the funnel, the drop reasons, charts and samples go
to MLflow. Killed and started again with the same config, it continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import tempfile
from itertools import islice
from pathlib import Path
from typing import ClassVar, Literal

import mlflow
from prefect import flow, get_run_logger, task, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from pipelines.dask_cluster import announce_cluster, cluster_task_runner
from pipelines.failure_hooks import notify_failure
from pipelines.retries import retry_if_transient
from pipelines.run_lock import folder_lock
from pipelines.tracking import describe, log_dataset, log_metrics_batch, tracked_run
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
    collect_shards,
    deduplicate_shards,
    export,
    plan_shards,
    process_shard,
    read_links,
)
from tasks.corpus.store import CorpusStore, causes
from tasks.fingerprint import fingerprint_path

FUNNEL_STAGES = ("links", "fetch", "extract", "filter", "dedup")

# The flow's Prefect tasks: the plain functions of tasks/corpus/process.py, named for the UI.
read_links_task = task(read_links, name="read-links")
plan_shards_task = task(plan_shards, name="plan-shards")
# A shard fetches its pages: a dropped connection to a Dask worker or to the shard's
# storage is worth a second try, and a retried shard resumes where it stopped (its writes
# are crash-safe). A page that fails to fetch is not an error here: it is counted and dropped.
process_shard_task = task(
    process_shard,
    name="process-shard",
    task_run_name="shard {shard}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
collect_shards_task = task(collect_shards, name="collect-shards")
deduplicate_task = task(deduplicate_shards, name="deduplicate")
export_task = task(export, name="export")

# MLflow tags of a run on an existing Dask cluster: where it ran and where to watch it.


class CorpusConfig(FunnelSettings):
    """Settings of the corpus flow (the CLI's options and `--config` TOML tables)."""

    # The settings that change which documents are kept: the run's MLflow params, so
    # corpus runs compare by them. The other 50 (timeouts, n-gram tables, ...) are in
    # the run's config.json.
    COMPARED: ClassVar[tuple[str, ...]] = (
        "shards",
        "runner",
        "link_rules.min_score",
        "link_rules.require_score",
        "link_rules.drop_wikipedia",
        "link_rules.drop_self_posts",
        "link_rules.drop_over_18",
        "fetch.respect_robots",
        "fetch.max_bytes",
        "extract.fast",
        "extract.favor_precision",
        "extract.include_tables",
        "extract.include_comments",
        "filters.languages",
        "filters.min_language_score",
        "filters.min_words",
        "filters.max_words",
        "filters.min_tokens",
        "filters.min_stop_words",
        "filters.min_alpha_words_fraction",
        "dedup.exact",
        "dedup.near",
        "dedup.threshold",
        "dedup.num_perm",
        "dedup.shingle_size",
    )

    links: list[Path] = Field(min_length=1, description="link dumps / URL lists to read")
    out: Path = Field(description="output folder: dataset, manifest, the run's state")
    shared: str | None = Field(
        None,
        description="where the shards' inputs, progress and results live: a folder or an "
        "fsspec URL (s3://bucket/corpus) that every worker reaches; default: `out`",
    )
    link_rules: LinkRules = LinkRules()
    dedup: DedupSettings = DedupSettings()
    shards: int = Field(
        16,
        ge=1,
        description="how many shards the links are cut into, by host (one Prefect task "
        "each); a few times the number of workers keeps them all busy. Fixed once a run "
        "has started",
    )
    batch_size: int = Field(64, ge=1, description="links fetched and extracted at a time")
    concurrent_batches: int = Field(
        2,
        ge=1,
        description="shards in flight at once with the default runner: one can "
        "fetch while another extracts; more only adds threads and memory",
    )
    runner: Literal["default", "dask"] = "default"
    dask_workers: int = Field(2, ge=1, description="processes of the local Dask cluster")
    dask_address: str | None = Field(
        None,
        description="an existing Dask scheduler, e.g. tcp://HOST:8786: run the shards on "
        "its workers (they need this code, its environment and `shared`)",
    )


class CorpusResult(BaseModel):
    dataset: Path
    manifest: Path
    fingerprint: str
    documents: int
    counts: dict[str, int]
    mlflow_run_id: str
    dask_dashboard: str | None = None


# What a person can change when a reason drops every link (reason or stage -> advice).
_SWITCHES = {
    "private_address": "the links point at private or loopback addresses, refused by "
    "default; --allow-network NETWORK (e.g. 127.0.0.1/32) allows a network you run",
    "robots_disallowed": "the sites' robots.txt forbid fetching them; a polite crawler "
    "stops there ([fetch] respect_robots = false only for sites you own)",
    "links": "the link rules dropped them: see [link_rules] (min_score, blocked_domains)",
    "filter": "the quality filters dropped them: see [filters] (languages, min_tokens)",
    "dedup": "they were all copies of one another",
}


def empty_corpus_note(counts: dict[str, int], top: int = 3) -> str | None:
    """For a run that kept no document: its most frequent drop reasons with their counts,
    and the setting that would change the first; None when something was kept."""
    if counts.get("kept", 0) or not counts.get("total"):
        return None
    found = causes(counts)[:top]
    listed = ", ".join(f"{cause.key} ({cause.count:,})" for cause in found)
    first = found[0] if found else None
    advice = first and (_SWITCHES.get(first.reason) or _SWITCHES.get(first.stage))
    return (
        f"no document was kept from {counts['total']:,} links; the most frequent reasons: "
        f"{listed}" + (f". {advice[0].upper()}{advice[1:]}" if advice else "")
    )


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


@flow(name="corpus", on_failure=[notify_failure])
def corpus_flow(config: CorpusConfig) -> CorpusResult:
    logger = get_run_logger()
    tags, dashboard = {}, None
    if config.dask_address:
        tags, dashboard = announce_cluster(config.dask_address, logger)
    location = config.shared or str(config.out)
    counts = read_links_task(config.links, config.link_rules, config.out, config.fetch)
    shards = plan_shards_task(config.out, location, config.shards)
    logger.info(
        "%d links, %d to fetch or finish; %d shards to do at %s",
        counts["total"],
        counts["pending"] + counts["fetched"],
        len(shards),
        location,
    )
    settings = FunnelSettings(fetch=config.fetch, extract=config.extract, filters=config.filters)
    futures = process_shard_task.map(
        unmapped(location),
        shards,
        unmapped(settings),
        unmapped(config.batch_size),
        unmapped(config.dedup),  # each shard signs its documents for the dedup
    )
    for done, future in enumerate(futures, start=1):
        summary = future.result()
        logger.info(
            "shard %d %s (%d/%d): %d links, %d kept",
            summary.shard,
            "was already done" if summary.already_done else "done",
            done,
            len(shards),
            summary.links,
            summary.kept,
        )
    collect_shards_task(config.out, location)
    deduplicate_task(config.out, location, config.dedup)
    exported = export_task(config.out)
    final_counts, run_id = log_corpus_run(config, exported, tags=tags)
    return CorpusResult(
        dataset=exported.dataset_path,
        manifest=exported.manifest_path,
        fingerprint=exported.fingerprint,
        documents=exported.n_documents,
        counts=final_counts,
        mlflow_run_id=run_id,
        dask_dashboard=dashboard,
    )


def log_corpus_run(
    config: CorpusConfig,
    exported: ExportResult,
    samples: int = 20,
    tags: dict[str, str] | None = None,
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
    compared = CorpusConfig.COMPARED
    with tracked_run("corpus", lineage=lineage, params=params, compared=compared, tags=tags) as run:
        # What it read (the link lists) and what it wrote (the dataset), for MLflow's
        # Dataset column and lineage.
        for links in config.links:
            log_dataset(run.info.run_id, links.name, links, lineage[f"links.{links.name}"], "input")
        folder = exported.corpus_path.parent  # corpus.json beside dataset/: what encode reads
        log_dataset(run.info.run_id, "corpus", folder, exported.fingerprint, "output")
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
        describe(run.info.run_id, corpus_description(stages, drops, exported))
        return counts, run.info.run_id


def corpus_description(stages: list[tuple[str, int]], drops: list, exported: ExportResult) -> str:
    """The run page's summary: the funnel in one line, the main reasons documents went."""
    flow = " → ".join(f"{name} {n:,}" for name, n in stages)
    why = ", ".join(f"{cause.key} {cause.count:,}" for cause in drops[:3]) or "none"
    return (
        f"**Corpus**: links fetched, main text extracted, filtered and deduplicated into "
        f"{exported.n_documents:,} documents (dataset `{exported.dataset_path.name}`, "
        f"fingerprint `{exported.fingerprint[:12]}`).\n\n"
        f"Funnel: {flow}.\n\nMain drop reasons: {why}."
    )


def _log_rows(rows: list[dict], name: str) -> None:
    """Log rows as an MLflow table (it takes columns); an empty table is not logged."""
    if rows:
        mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, name)


def run_corpus(config: CorpusConfig) -> CorpusResult:
    """Run the flow with the task runner the config asks for. The output folder is locked
    first: a second run into it refuses at once, naming the first."""
    with folder_lock(config.out):
        return corpus_flow.with_options(task_runner=task_runner(config))(config)


def task_runner(config: CorpusConfig) -> TaskRunner:
    """Threads on this machine; a local Dask cluster; or the Dask cluster at dask_address."""
    if config.dask_address:
        # Its workers must run non-daemonic (see docs/corpus.md), as the local cluster
        # below does.
        return cluster_task_runner(config.dask_address)
    if config.runner == "dask":
        import dask
        from prefect_dask import DaskTaskRunner

        # Dask workers are daemonic by default, and a daemonic process may not start
        # children: the extraction pool (which enforces the per-page time limit) needs to.
        dask.config.set({"distributed.worker.daemon": False})

        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": config.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    # Prefect's default thread pool is unbounded: every shard of a million-link dump
    # would start at once, each with its own event loop and HTTP client.
    return ThreadPoolTaskRunner(max_workers=config.concurrent_batches)
