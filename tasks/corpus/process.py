"""The corpus funnel's units of work, each a plain function (`pipelines/corpus.py` makes them
Prefect tasks).

    read_links    -> every input link into the run's store, with its link-rule verdict
    plan_shards   -> the links still to do, cut into shards by host, written to the location
    process_shard (one per shard, on any worker), in the shard's own store:
        read_robots   -> each of its hosts' robots.txt, once
        plan_batches  -> its unfinished links, cut into batches of consecutive ids
        per batch: fetch_into_store -> extract_from_store (extract + filter), the next
        batch fetched while one is extracted
        then its fates and documents as files at the location, and its marker
    collect_shards -> the finished shards' outcomes into the run's store
    deduplicate_shards -> mark exact and near duplicates among all kept documents
    export        -> the dataset, the manifest and the corpus fingerprint

Tasks pass only paths and small summaries, so any task may run in another process or on
another machine; the state lives in stores and files (see `shards.py`), so a killed run
resumes where it stopped: a page is recorded the moment it arrives and is never fetched
again.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from tasks.corpus.dedup import DedupSettings, find_duplicates
from tasks.corpus.export import ExportResult, export_corpus
from tasks.corpus.extract import ExtractSettings, extract_pages
from tasks.corpus.fetch import FetchSettings, fetch_batch, fetch_robots
from tasks.corpus.filters import FilterSettings
from tasks.corpus.links import LinkRules, iter_link_decisions
from tasks.corpus.records import Document, Verdict
from tasks.corpus.shards import (
    DONE_FILE,
    Location,
    ShardError,
    ShardSummary,
    find_shard_duplicates,
    finish_shard,
    planned_shards,
    read_marker,
    read_shard_input,
    shard_documents,
    shard_fates,
    write_shard_inputs,
)
from tasks.corpus.store import CorpusStore


class FunnelSettings(BaseModel):
    """What one batch needs: how to fetch, extract and filter."""

    fetch: FetchSettings = FetchSettings()
    extract: ExtractSettings = ExtractSettings()
    filters: FilterSettings = FilterSettings()


@dataclass(frozen=True)
class Batch:
    """Links with first <= idx <= last (only the unfinished ones among them are worked on)."""

    first: int
    last: int


@dataclass(frozen=True)
class BatchSummary:
    fetched: int
    kept: int
    outcomes: dict[str, int]  # "stage.reason" or "kept" -> count


def read_links(
    paths: Sequence[Path], rules: LinkRules, out_dir: Path, fetch: FetchSettings | None = None
) -> dict[str, int]:
    """Record every input link and its link-rule verdict; return the store's counts.

    Reading the same inputs again (a resumed run) changes nothing. A run resumed with
    another fetch policy (`FetchSettings.decision_policy`) is refused, as one with other
    inputs is: the fates already recorded were decided under the first.
    """
    with CorpusStore(out_dir) as store:
        store.check_fetch_policy((fetch or FetchSettings()).decision_policy())
        store.add_links(iter_link_decisions(paths, rules))
        return store.counts()


def read_robots(out_dir: Path, settings: FetchSettings) -> int:
    """Read the robots.txt of every host still to visit, once, into the store: the batches
    then share it instead of each reading it again. Returns how many hosts were read."""
    with CorpusStore(out_dir) as store:
        origins = store.pending_origins()
        fetch_robots(origins, settings, cache=store)
    return len(origins)


def plan_batches(out_dir: Path, batch_size: int) -> list[Batch]:
    """Cut the links still to do (never fetched, or fetched but not yet extracted) into
    batches of up to `batch_size`, in input order."""
    with CorpusStore(out_dir) as store:
        todo = store.unfinished_ids()
    return [
        Batch(todo[i], todo[min(i + batch_size, len(todo)) - 1])
        for i in range(0, len(todo), batch_size)
    ]


def process_batch(out_dir: Path, batch: Batch, settings: FunnelSettings) -> BatchSummary:
    """Fetch, extract and filter one batch, recording every outcome in the store."""
    fetched = fetch_into_store(out_dir, batch, settings)
    outcomes = extract_from_store(out_dir, batch, settings)
    return BatchSummary(fetched=fetched, kept=outcomes["kept"], outcomes=outcomes)


def fetch_into_store(out_dir: Path, batch: Batch, settings: FunnelSettings) -> int:
    """Fetch the batch's links not fetched yet; returns how many were fetched."""
    size = batch.last - batch.first + 1
    with CorpusStore(out_dir) as store:
        links = [
            link for idx, link in store.pending_links(size, batch.first - 1) if idx <= batch.last
        ]
        # Each page is written to the store the moment it arrives (crash safety).
        fetch_batch(links, settings.fetch, on_page=store.record_page, robots_cache=store)
    return len(links)


def extract_from_store(out_dir: Path, batch: Batch, settings: FunnelSettings) -> dict[str, int]:
    """Extract and filter the batch's fetched pages; returns "kept" / "stage.reason" counts."""
    size = batch.last - batch.first + 1
    with CorpusStore(out_dir) as store:
        # Every fetched page of the batch still waiting for extraction: this run's, and
        # any left by an interrupted run (their bodies are stored; nothing is re-fetched).
        fetched = [
            row for row in store.fetched_pages(size, batch.first - 1) if row[0] <= batch.last
        ]
        pages = [page for _, _, page in fetched]
        # Extraction and filtering both run in the extraction worker processes.
        results = extract_pages(pages, settings.extract, settings.filters)
        store.record_results(
            (idx, result) for (idx, _, _), result in zip(fetched, results, strict=True)
        )
    outcomes = Counter(
        "kept" if isinstance(r, Document) else f"{r.stage}.{r.reason}" for r in results
    )
    return {"kept": 0, **outcomes}


def plan_shards(out_dir: Path, location: str, n_shards: int) -> list[int]:
    """Cut the run's unfinished links into `n_shards` shards by host, at `location` (a folder
    or fsspec URL), once; return the shards not done yet."""
    with CorpusStore(out_dir) as store:
        return write_shard_inputs(store, Location(location), n_shards)


def process_shard(
    location: str,
    shard: int,
    settings: FunnelSettings,
    batch_size: int,
    dedup: DedupSettings | None = None,
) -> ShardSummary:
    """Fetch, extract and filter one shard's links, then publish its results.

    Runs on any worker that reaches `location`. A shard already marked done is skipped; one
    that is not is (re)done in its own store, which resumes what an interrupted attempt on
    this folder (or, for object stores, this machine) recorded."""
    place = Location(location)
    marker = read_marker(place, shard)
    if marker is not None:
        return ShardSummary(shard, marker["links"], marker["kept"], already_done=True)
    numbered = read_shard_input(place, shard)
    work = place.work_dir(shard)
    # The shard's store numbers its links 0, 1, ... in the input's order; `ids` maps back.
    with CorpusStore(work) as store:
        store.add_links(decision for _, decision in numbered)
    read_robots(work, settings.fetch)
    # One batch is fetched while the one before it is extracted, so the network and the
    # extraction processes work at the same time; only one batch fetches at a time, so the
    # per-host limits hold.
    previous: Batch | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-fetch") as fetcher:
        for batch in plan_batches(work, batch_size):
            fetching = fetcher.submit(fetch_into_store, work, batch, settings)
            if previous is not None:
                extract_from_store(work, previous, settings)
            fetching.result()
            previous = batch
    if previous is not None:
        extract_from_store(work, previous, settings)
    with CorpusStore(work) as store:
        kept = finish_shard(place, shard, store, [idx for idx, _ in numbered], dedup)
    # Its outcomes are published: the working copy (documents again) would only take space.
    shutil.rmtree(work, ignore_errors=True)
    return ShardSummary(shard, len(numbered), kept, already_done=False)


def collect_shards(out_dir: Path, location: str) -> dict[str, int]:
    """Record every shard's fates and documents in the run's store, once all are done;
    return its counts."""
    place = Location(location)
    with CorpusStore(out_dir) as store:
        for shard in planned_shards(place):
            if read_marker(place, shard) is None:
                # Every shard task returned, so its marker exists where it ran: a worker
                # wrote to a folder of its own machine, not one this machine sees.
                raise ShardError(
                    f"{place.shard_path(shard, DONE_FILE)}: shard {shard} finished but its "
                    "results are not here: give `shared` a folder or URL that every worker "
                    "and this machine reach"
                )
            store.record_shard_results(shard_fates(place, shard), shard_documents(place, shard))
        return store.counts()


def deduplicate_shards(out_dir: Path, location: str, settings: DedupSettings) -> dict[str, int]:
    """Mark exact and near duplicates among the documents of all finished shards (first in
    input order wins), in the run's store; returns how many per reason."""
    place = Location(location)
    done = [s for s in planned_shards(place) if read_marker(place, s) is not None]
    verdicts = find_shard_duplicates(place, done, settings)
    return _mark(out_dir, verdicts)


def deduplicate(out_dir: Path, settings: DedupSettings) -> dict[str, int]:
    """Mark exact and near duplicates among the kept documents (first in input order wins).

    Runs after every batch, over all kept documents at once, so the result does not depend
    on which batch finished first (the same dataset with any task runner)."""
    with CorpusStore(out_dir) as store:
        verdicts = find_duplicates(((d.idx, d.text) for d in store.iter_documents()), settings)
    return _mark(out_dir, verdicts)


def _mark(out_dir: Path, verdicts: dict[int, Verdict]) -> dict[str, int]:
    by_reason: dict[str, dict[int, str]] = {}
    for idx, verdict in verdicts.items():
        by_reason.setdefault(verdict.reason, {})[idx] = verdict.detail
    with CorpusStore(out_dir) as store:
        for reason, details in by_reason.items():
            store.mark_duplicates(list(details), reason=reason, detail=details)
    return {reason: len(details) for reason, details in by_reason.items()}


def export(out_dir: Path) -> ExportResult:
    """Write the dataset, the manifest and the corpus fingerprint."""
    with CorpusStore(out_dir) as store:
        return export_corpus(store)
