"""The corpus funnel's units of work, each a plain function (`pipelines/corpus.py` makes them
Prefect tasks).

    read_links   -> every input link into the store, with its link-rule verdict
    read_robots  -> each host's robots.txt, once, into the store
    plan_batches -> the unfinished links, cut into batches of consecutive ids
    process_batch (one per batch, in parallel): fetch -> extract -> filter -> record
    deduplicate  -> mark exact and near duplicates among the kept documents
    export       -> the dataset, the manifest and the corpus fingerprint

Everything goes through the store (SQLite in the output folder), so tasks pass only paths
and small summaries, any task may run in another process, and a killed run resumes where
it stopped: a page is recorded the moment it arrives and is never fetched again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from tasks.corpus.dedup import DedupSettings, find_duplicates
from tasks.corpus.export import ExportResult, export_corpus
from tasks.corpus.extract import ExtractSettings, extract_pages
from tasks.corpus.fetch import FetchSettings, fetch_batch, fetch_robots
from tasks.corpus.filters import FilterSettings
from tasks.corpus.links import LinkRules, iter_link_decisions
from tasks.corpus.records import Document
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


def read_links(paths: Sequence[Path], rules: LinkRules, out_dir: Path) -> dict[str, int]:
    """Record every input link and its link-rule verdict; return the store's counts.

    Reading the same inputs again (a resumed run) changes nothing.
    """
    with CorpusStore(out_dir) as store:
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
    size = batch.last - batch.first + 1
    with CorpusStore(out_dir) as store:
        links = [
            link for idx, link in store.pending_links(size, batch.first - 1) if idx <= batch.last
        ]
        # Each page is written to the store the moment it arrives (crash safety).
        fetch_batch(links, settings.fetch, on_page=store.record_page, robots_cache=store)

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
    return BatchSummary(fetched=len(links), kept=outcomes["kept"], outcomes=dict(outcomes))


def deduplicate(out_dir: Path, settings: DedupSettings) -> dict[str, int]:
    """Mark exact and near duplicates among the kept documents (first in input order wins).

    Runs after every batch, over all kept documents at once, so the result does not depend
    on which batch finished first (the same dataset with any task runner)."""
    with CorpusStore(out_dir) as store:
        verdicts = find_duplicates(((d.idx, d.text) for d in store.iter_documents()), settings)
        by_reason: dict[str, dict[int, str]] = {}
        for idx, verdict in verdicts.items():
            by_reason.setdefault(verdict.reason, {})[idx] = verdict.detail
        for reason, details in by_reason.items():
            store.mark_duplicates(list(details), reason=reason, detail=details)
    return {reason: len(details) for reason, details in by_reason.items()}


def export(out_dir: Path) -> ExportResult:
    """Write the dataset, the manifest and the corpus fingerprint."""
    with CorpusStore(out_dir) as store:
        return export_corpus(store)
