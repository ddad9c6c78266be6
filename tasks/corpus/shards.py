"""Shards: the corpus work cut by host, kept where every worker can reach it.

One machine's SQLite file cannot be shared by a cluster, so the flow splits its links into
shards and keeps each shard's input, progress and results under one *location*: a folder
(local, or shared such as NFS) or an fsspec URL (`s3://bucket/corpus`, through s3fs):

    <location>/shards/plan.json             how many shards (a resumed run must agree)
    <location>/shards/00007/links.parquet   the shard's input: (idx, url, ...) rows
    <location>/shards/00007/fates.parquet   every link's fate, once the shard is done
    <location>/shards/00007/documents.parquet   its kept documents
    <location>/shards/00007/done.json       the completion marker, written last
    <location>/shards/00007/work/           its CorpusStore while it works (local folders)

Why by host: every link of a host lands in the same shard, so one task reads that host's
robots.txt once and its per-host delay and connection limit hold, although many machines
fetch at once, with no coordination between them.

Why a marker: a shard is done exactly when `done.json` exists, and it is written after the
results (which are themselves written under a temporary name and renamed, where the file
system can rename). A worker killed half-way leaves no marker, so the shard is redone; its
CorpusStore (inside the shard's folder on a local or shared folder, in a local scratch folder
for object stores) makes the redo resume: no URL whose fate was recorded is fetched again.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.corpus.dedup import DedupSettings, find_duplicates
from tasks.corpus.fetch import origin_of
from tasks.corpus.links import LinkDecision
from tasks.corpus.records import Link, Verdict
from tasks.corpus.sharded_dedup import (
    SIGNATURES_SUFFIX,
    find_duplicates_across_shards,
    signature_settings,
    write_shard_signatures,
)
from tasks.corpus.store import CorpusStore, FateRecord, StoredDocument

SHARDS_DIR = "shards"
PLAN_FILE = "plan.json"
INPUT_FILE = "links.parquet"
FATES_FILE = "fates.parquet"
DOCUMENTS_FILE = "documents.parquet"
DONE_FILE = "done.json"
SIGNATURES_FILE = "signatures" + SIGNATURES_SUFFIX  # MinHash signatures, for the dedup
WORK_DIR = "work"

_INPUT_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("source", pa.string()),
        ("raw_url", pa.string()),
        ("url", pa.string()),
        ("karma", pa.int64()),
        ("subreddit", pa.string()),
        ("post_id", pa.string()),
        ("created_utc", pa.int64()),
    ]
)
_FATE_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("source", pa.string()),
        ("raw_url", pa.string()),
        ("url", pa.string()),
        ("fate", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("http_status", pa.int64()),
    ]
)
_DOCUMENT_SCHEMA = pa.schema(
    [
        ("idx", pa.int64()),
        ("url", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("karma", pa.int64()),
        ("subreddit", pa.string()),
        ("fetched_at", pa.string()),
        ("content_hash", pa.string()),
    ]
)
_READ_BATCH = 2_000  # rows per Arrow batch when reading results back: bounded memory
_WRITE_BATCH = 2_000  # rows per Parquet row group when writing: bounded memory


class ShardError(ValueError):
    """The shard layout at a location cannot be used: one line naming the file and why."""


@dataclass(frozen=True)
class ShardSummary:
    """What one shard task did (small: it travels back to the flow)."""

    shard: int
    links: int
    kept: int
    already_done: bool  # its marker existed: nothing was fetched this time


def shard_of(url: str, n_shards: int) -> int:
    """The shard of a link: a stable hash of its origin (scheme://host:port) modulo n_shards.

    The origin is what the fetcher's politeness is per (robots.txt, delay, connections).
    SHA-1 rather than hash(): Python salts str hashes per process, and every process of
    every machine must agree. A URL without a usable origin is hashed whole (it fails at
    the fetcher, which names it)."""
    try:
        key = origin_of(url)
    except (ValueError, UnicodeError):
        key = url
    return int.from_bytes(hashlib.sha1(key.encode("utf-8", "surrogatepass")).digest()[:8]) % (
        n_shards
    )


class Location:
    """A folder or fsspec URL holding the shards; every path below is relative to it."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        # A local folder can rename atomically and can hold a SQLite file; an object store
        # can do neither, so its shards work in a local scratch folder.
        self.local = "file" in _protocols(self.fs)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def shard_path(self, shard: int, *parts: str) -> str:
        return self.path(SHARDS_DIR, f"{shard:05d}", *parts)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write(self, path: str, write: Callable[[IO[bytes]], None]) -> None:
        """Write `path` so that a reader sees all of it or nothing: on a file system, to a
        temporary name renamed into place; on an object store an upload is already
        all-or-nothing."""
        with self.open_for_writing(path) as handle:
            write(handle)

    @contextmanager
    def open_for_writing(self, path: str) -> Iterator[IO[bytes]]:
        """`write` as a context manager: `path` appears only if the block ends normally."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        target = f"{path}.tmp-{uuid.uuid4().hex}" if self.local else path
        try:
            with self.fs.open(target, "wb") as handle:
                yield handle
        except BaseException:
            if target != path:
                self.fs.rm(target)
            raise
        if target != path:
            os.replace(target, path)

    def work_dir(self, shard: int) -> Path:
        """Where the shard's CorpusStore lives while it works: inside the shard's folder on
        a file system, else a scratch folder of this machine, named after location and shard
        (so a task resumed on the same machine finds its progress)."""
        if self.local:
            return Path(self.shard_path(shard, WORK_DIR))
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "gpt2lab-corpus-shards" / key / f"{shard:05d}"


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


# --------------------------------------------------------------------------------------------
# The driver: cut the links into shards
# --------------------------------------------------------------------------------------------


def write_shard_inputs(store: CorpusStore, location: Location, n_shards: int) -> list[int]:
    """Write each shard's input (the run's unfinished links of its hosts, in idx order)
    unless written already; return the shards that are not done yet.

    The split is made once per location (plan.json records it): a resumed run with another
    `n_shards` is refused, since its shards would not match the ones on disk.
    """
    plan_path = location.path(SHARDS_DIR, PLAN_FILE)
    if location.exists(plan_path):
        with location.fs.open(plan_path, "rb") as handle:
            planned = json.load(handle)["n_shards"]
        if planned != n_shards:
            raise ShardError(
                f"{plan_path}: this run was cut into {planned} shards, the config asks for "
                f"{n_shards}: keep shards = {planned} or use a new output folder"
            )
    else:
        shards = _write_inputs(store, location, n_shards)
        # Written last: without it, a crash above just makes the next run cut again.
        plan = {"n_shards": n_shards, "shards": shards}
        location.write(plan_path, lambda handle: handle.write(json.dumps(plan).encode()))
    with location.fs.open(plan_path, "rb") as handle:
        shards = json.load(handle)["shards"]
    return [s for s in shards if not location.exists(location.shard_path(s, DONE_FILE))]


def _write_inputs(store: CorpusStore, location: Location, n_shards: int) -> list[int]:
    """One pass over the run's links, each appended to its shard's input file; a shard's
    rows are buffered up to `_WRITE_BATCH` (memory: shards x batch, not the whole input).
    Returns the shards that got links."""
    with ExitStack() as files:
        writers: dict[int, pq.ParquetWriter] = {}
        buffers: dict[int, list[dict[str, Any]]] = {}

        def flush(shard: int) -> None:
            if shard not in writers:
                path = location.shard_path(shard, INPUT_FILE)
                handle = files.enter_context(location.open_for_writing(path))
                writers[shard] = files.enter_context(pq.ParquetWriter(handle, _INPUT_SCHEMA))
            writers[shard].write_table(pa.Table.from_pylist(buffers.pop(shard), _INPUT_SCHEMA))

        for idx, source, raw_url, link in store.unfinished_links():
            shard = shard_of(link.url, n_shards)
            row = {"idx": idx, "source": source, "raw_url": raw_url, **_link_fields(link)}
            buffers.setdefault(shard, []).append(row)
            if len(buffers[shard]) == _WRITE_BATCH:
                flush(shard)
        for shard in list(buffers):
            flush(shard)
        return sorted(writers)


def planned_shards(location: Location) -> list[int]:
    """Every shard of the plan (done or not)."""
    with location.fs.open(location.path(SHARDS_DIR, PLAN_FILE), "rb") as handle:
        return json.load(handle)["shards"]


def _link_fields(link: Link) -> dict[str, Any]:
    return {
        "url": link.url,
        "karma": link.karma,
        "subreddit": link.subreddit,
        "post_id": link.post_id,
        "created_utc": link.created_utc,
    }


def _write_parquet(
    location: Location, path: str, schema: pa.Schema, rows: Iterable[dict[str, Any]]
) -> int:
    """Stream `rows` into a Parquet file at `path`, a row group per `_WRITE_BATCH` rows (so
    memory holds one batch, however big the shard); returns how many rows."""
    count = 0
    with location.open_for_writing(path) as handle, pq.ParquetWriter(handle, schema) as writer:
        rows = iter(rows)
        while batch := list(islice(rows, _WRITE_BATCH)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


# --------------------------------------------------------------------------------------------
# A worker: one shard
# --------------------------------------------------------------------------------------------


def read_shard_input(location: Location, shard: int) -> list[tuple[int, LinkDecision]]:
    """The shard's links as (global idx, LinkDecision), in idx order."""
    with location.fs.open(location.shard_path(shard, INPUT_FILE), "rb") as handle:
        rows = pq.read_table(handle).to_pylist()
    return [
        (
            row["idx"],
            LinkDecision(
                source=row["source"],
                raw_url=row["raw_url"],
                url=row["url"],
                link=Link(
                    url=row["url"],
                    karma=row["karma"],
                    subreddit=row["subreddit"],
                    post_id=row["post_id"],
                    created_utc=row["created_utc"],
                    source=row["source"],
                ),
            ),
        )
        for row in rows
    ]


def finish_shard(
    location: Location,
    shard: int,
    store: CorpusStore,
    ids: list[int],
    dedup: DedupSettings | None = None,
) -> int:
    """Write the shard's fates and documents (global idx), streamed, then (with `dedup`)
    its documents' MinHash signatures, and then its marker; returns the number of kept
    documents. `ids[i]` is the global idx of the store's link i."""
    counts = store.counts()
    if counts["pending"] or counts["fetched"]:
        raise ShardError(f"shard {shard}: links are still pending; it cannot be finished")
    links = _write_parquet(
        location,
        location.shard_path(shard, FATES_FILE),
        _FATE_SCHEMA,
        ({**asdict(f), "idx": ids[f.idx]} for f in store.fates()),
    )
    kept = _write_parquet(
        location,
        location.shard_path(shard, DOCUMENTS_FILE),
        _DOCUMENT_SCHEMA,
        ({**asdict(d), "idx": ids[d.idx]} for d in store.iter_documents()),
    )
    if dedup is not None:
        documents = ((ids[d.idx], d.text) for d in store.iter_documents())
        publish_signatures(location, shard, documents, dedup)
    marker = json.dumps({"links": links, "kept": kept}).encode()
    location.write(location.shard_path(shard, DONE_FILE), lambda handle: handle.write(marker))
    return kept


def publish_signatures(
    location: Location, shard: int, documents: Iterable[tuple[int, str]], dedup: DedupSettings
) -> int:
    """Sign the shard's documents ((global idx, text)) on this worker, where they are, and
    put the file beside the shard's results: the deduplication then reads signatures, a
    few hundred bytes per document, instead of every shard's texts."""
    with tempfile.TemporaryDirectory(prefix="gpt2lab-signatures-") as folder:
        local = Path(folder) / SIGNATURES_FILE
        signed = write_shard_signatures(documents, local, dedup)
        with open(local, "rb") as source:
            location.write(
                location.shard_path(shard, SIGNATURES_FILE),
                lambda handle: shutil.copyfileobj(source, handle),
            )
    return signed


def read_marker(location: Location, shard: int) -> dict[str, int] | None:
    path = location.shard_path(shard, DONE_FILE)
    if not location.exists(path):
        return None
    with location.fs.open(path, "rb") as handle:
        return json.load(handle)


# --------------------------------------------------------------------------------------------
# The driver again: read the finished shards back
# --------------------------------------------------------------------------------------------


def _rows(location: Location, shard: int, name: str) -> Iterator[dict[str, Any]]:
    with location.fs.open(location.shard_path(shard, name), "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=_READ_BATCH):
            yield from batch.to_pylist()


def shard_fates(location: Location, shard: int) -> Iterator[FateRecord]:
    return (FateRecord(**row) for row in _rows(location, shard, FATES_FILE))


def shard_documents(location: Location, shard: int) -> Iterator[StoredDocument]:
    return (StoredDocument(**row) for row in _rows(location, shard, DOCUMENTS_FILE))


def documents_in_order(location: Location, shards: Iterable[int]) -> Iterator[StoredDocument]:
    """Every shard's kept documents merged into one stream in idx (input) order; each shard's
    file is already in idx order, so this holds one batch per shard in memory."""
    return heapq.merge(*(shard_documents(location, s) for s in shards), key=lambda d: d.idx)


def find_shard_duplicates(
    location: Location, shards: list[int], settings: DedupSettings
) -> dict[int, Verdict]:
    """Exact and near duplicates among all shards' documents (first in input order wins).

    Where every shard published its signatures with these settings, the LSH bands are
    bucketed across the shards' signature files (`sharded_dedup.py`, the way datatrove
    does it): no document text is read again. Otherwise (shards from before signatures,
    or other dedup settings now) one process streams every shard's documents in idx order
    through `find_duplicates`. Both give the same verdicts (a test checks it)."""
    paths = [location.shard_path(shard, SIGNATURES_FILE) for shard in shards]
    if shards and all(location.exists(path) for path in paths):
        with tempfile.TemporaryDirectory(prefix="gpt2lab-signatures-") as folder:
            local = paths if location.local else _downloaded(location, paths, Path(folder))
            if all(signature_settings(path) == settings for path in local):
                return find_duplicates_across_shards(local, settings)
    documents = documents_in_order(location, shards)
    return find_duplicates(((d.idx, d.text) for d in documents), settings)


def _downloaded(location: Location, paths: list[str], folder: Path) -> list[str]:
    """Local copies of `paths` from an object store (the files are read at random)."""
    copies = []
    for number, path in enumerate(paths):
        copy = folder / f"{number:05d}{SIGNATURES_SUFFIX}"
        location.fs.get(path, str(copy))
        copies.append(str(copy))
    return copies
