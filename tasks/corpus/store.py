"""The crash-safe state of one corpus run: every link, page and document, in one SQLite file.

Everything a corpus run learns goes into one SQLite file, `<folder>/state.sqlite`, as soon as
it is learnt, one transaction at a time. A run killed at any moment (even by SIGKILL) and
started again with the same inputs and config continues where it stopped:

- every input link has a row, numbered `idx` in input order, with its fate once known;
- a page is recorded the moment it arrives (`record_pages`): its body, zlib-compressed, waits
  in the `bodies` table until extraction and filtering have decided about it. So a URL that
  was fetched is never fetched again, even when the crash came before its extraction; the
  body is deleted once its result is recorded (`record_results`), so the file stays small;
- documents are rows too, so none is lost or written twice: `idx` is the primary key.

Each link moves through three states:

    pending --record_pages--> fetched --record_results--> done
       \\______________ failed fetch / dropped _____________/

and ends with one fate: "kept", "dropped" (stage + reason) or "failed" (stage, reason, HTTP
status). Links the link rules dropped are "done" from the start.

Why SQLite: one file, no server, transactions that survive a killed process, and several
processes (Dask workers on one machine) may write to it: WAL mode lets readers go on while one
writer commits, and a busy timeout makes writers wait their turn instead of failing. Open one
`CorpusStore` per process; a pickled store reopens the file in the process that unpickles it.

A run cut into shards (`shards.py`) has two kinds: each shard works in a store of its own,
and the run's store holds every input link and takes the finished shards' outcomes back
(`record_shard_results`) before deduplication and export.

The store keeps state only: `export.py` turns it into the dataset, manifest and fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.corpus.fetch import Outcome, origin_of, robots_url
from tasks.corpus.links import LinkDecision
from tasks.corpus.records import Document, Link, Page, Verdict
from tasks.private_files import make_private_file

STATE_FILE = "state.sqlite"

# PRAGMA application_id marks the file as ours ("G2LC" in ASCII); PRAGMA user_version holds the
# schema version. A file with another id, or a newer/older schema, is refused by name.
APPLICATION_ID = 0x47324C43
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction


_ADD_CHUNK = 2_000  # links per transaction in add_links: big enough to be fast
_READ_PAGE = 1_000  # rows per query when iterating, so no read holds the database long

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE links (
    idx INTEGER PRIMARY KEY,      -- position in the input, from 0
    source TEXT NOT NULL,         -- "file:line"
    raw_url TEXT,                 -- as written in the input
    url TEXT,                     -- normalised
    karma INTEGER,
    subreddit TEXT,
    post_id TEXT,
    created_utc INTEGER,
    fetchable INTEGER NOT NULL,   -- 1 when the link rules kept it
    state TEXT NOT NULL,          -- pending | fetched | done
    fate TEXT,                    -- kept | dropped | failed, once done
    stage TEXT,
    reason TEXT,
    detail TEXT,
    http_status INTEGER,
    final_url TEXT,
    fetched_at TEXT
);
-- The link rules drop repeated URLs, so a fetchable URL names exactly one link.
CREATE UNIQUE INDEX links_fetchable_url ON links(url) WHERE fetchable = 1;
CREATE INDEX links_state ON links(state, idx);
CREATE TABLE bodies (           -- fetched pages waiting for extraction
    idx INTEGER PRIMARY KEY REFERENCES links(idx),
    content_type TEXT,
    attempts INTEGER NOT NULL,
    body BLOB NOT NULL            -- zlib-compressed
);
CREATE TABLE documents (
    idx INTEGER PRIMARY KEY REFERENCES links(idx),
    title TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE TABLE robots (           -- each host's robots.txt answer, read once per corpus
    origin TEXT PRIMARY KEY,      -- scheme://host:port
    status INTEGER,
    content_type TEXT,
    body BLOB,
    failure_stage TEXT,
    failure_reason TEXT,
    failure_detail TEXT
);
"""

_LINK_COLUMNS = "idx, source, url, karma, subreddit, post_id, created_utc"
_DOCUMENT_QUERY = """
    SELECT l.idx, l.url, d.title, d.text, l.karma, l.subreddit, l.fetched_at, d.content_hash
    FROM links l JOIN documents d ON d.idx = l.idx
    WHERE l.fate = 'kept' AND l.idx > ? ORDER BY l.idx LIMIT ?
"""


class StoreError(RuntimeError):
    """The state database cannot be used: a one-line message naming the file and why."""


@dataclass(frozen=True)
class StoredDocument:
    """A kept document as the dataset will hold it, with its link's `idx`."""

    idx: int
    url: str
    title: str | None
    text: str
    karma: int | None
    subreddit: str | None
    fetched_at: str | None
    content_hash: str


@dataclass(frozen=True)
class FateRecord:
    """One manifest row: what happened to one input link."""

    idx: int
    source: str
    raw_url: str | None
    url: str | None
    fate: str  # kept | dropped | failed | pending (not finished yet)
    stage: str | None
    reason: str | None
    detail: str | None
    http_status: int | None


@dataclass(frozen=True)
class Cause:
    """One "<fate>.<stage>.<reason>" entry of `CorpusStore.counts()`, taken apart."""

    fate: str  # dropped | failed
    stage: str  # links | robots | fetch | extract | filter | dedup
    reason: str
    count: int

    @property
    def key(self) -> str:
        return f"{self.fate}.{self.stage}.{self.reason}"


def causes(counts: dict[str, int]) -> list[Cause]:
    """The per-cause entries of `counts` (reason codes hold no dots), most frequent first."""
    found = [Cause(*key.split("."), n) for key, n in counts.items() if key.count(".") == 2]
    return sorted(found, key=lambda cause: -cause.count)


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the text after normalising what does not change its meaning.

    Unicode is put in NFC form (one code for "é", not "e" + accent), line endings become "\\n",
    trailing spaces on each line and blank lines at both ends are removed. Two pages whose text
    differs only in those ways get the same hash, which makes exact duplicates easy to find.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    normal = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


class CorpusStore:
    """Open (or create) the state database of the corpus run in `folder`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STATE_FILE
        # One connection per store; the lock lets a fetcher call back from another thread.
        self._lock = threading.RLock()
        self._db = _connect(self.path)

    # A pickled store (sent to a Dask worker) carries only its folder and reopens the file
    # there: SQLite connections cannot cross processes.
    def __reduce__(self) -> tuple[Callable[..., CorpusStore], tuple[Path]]:
        return (CorpusStore, (self.folder,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is on disk after the block, or none of it.

        BEGIN IMMEDIATE takes the write lock at the start (waiting up to the busy timeout for
        other processes), so two writers never both start and then fail to commit.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # ----------------------------------------------------------------------------------------
    # Links
    # ----------------------------------------------------------------------------------------

    def add_links(self, decisions: Iterable[LinkDecision]) -> int:
        """Record every input link (kept or dropped) with `idx` = its position; returns how many.

        Idempotent: on resume the same decisions are read again and rows already there are
        checked, not added twice. A row that does not match (other file, other URL, other
        verdict) means the inputs or link rules changed: StoreError, nothing is overwritten.
        """
        known = self._recorded_link_total()
        count = 0
        chunk: list[tuple[int, LinkDecision]] = []
        for idx, decision in enumerate(decisions):
            chunk.append((idx, decision))
            if len(chunk) == _ADD_CHUNK:
                self._add_chunk(chunk, known)
                chunk = []
            count = idx + 1
        if chunk:
            self._add_chunk(chunk, known)
        self._record_link_total(count, known)
        return count

    def _add_chunk(self, chunk: list[tuple[int, LinkDecision]], known: int | None) -> None:
        first, last = chunk[0][0], chunk[-1][0]
        if known is not None and last >= known:  # checked before anything is written
            self._inputs_changed(known, f"at least {last + 1}")
        with self._transaction() as db:
            rows = db.execute(
                "SELECT idx, source, raw_url, url, fetchable, reason FROM links"
                " WHERE idx BETWEEN ? AND ?",
                (first, last),
            ).fetchall()
            existing = {row["idx"]: row for row in rows}
            new_rows = []
            for idx, decision in chunk:
                if idx in existing:
                    self._check_same_link(existing[idx], idx, decision)
                else:
                    new_rows.append(_link_row(idx, decision))
            db.executemany(
                "INSERT INTO links (idx, source, raw_url, url, karma, subreddit, post_id,"
                " created_utc, fetchable, state, fate, stage, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )

    def _check_same_link(self, row: sqlite3.Row, idx: int, decision: LinkDecision) -> None:
        recorded_reason = None if row["fetchable"] else row["reason"]
        new_reason = decision.verdict.reason if decision.verdict else None
        if (row["source"], row["raw_url"], row["url"], recorded_reason) != (
            decision.source,
            decision.raw_url,
            decision.url,
            new_reason,
        ):
            raise StoreError(
                f"{self.path}: link {idx} was recorded as {row['source']} {row['raw_url']!r} "
                f"({recorded_reason or 'kept'}), the input now gives {decision.source} "
                f"{decision.raw_url!r} ({new_reason or 'kept'}): the inputs or link rules "
                "changed since this run started; use a new output folder"
            )

    def _recorded_link_total(self) -> int | None:
        """How many links a complete earlier add_links recorded; None if none completed."""
        rows = self._query("SELECT value FROM meta WHERE key = 'n_links'")
        return int(rows[0]["value"]) if rows else None

    def _record_link_total(self, count: int, known: int | None) -> None:
        if known is None:
            with self._transaction() as db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('n_links', ?)", (str(count),))
        elif count != known:
            self._inputs_changed(known, str(count))

    def check_fetch_policy(self, policy: Mapping[str, Any]) -> None:
        """Record the fetch policy this run decides with (what may be fetched at all: the
        address rules, robots.txt, the user agent, the size limit), or refuse another one.

        A fate recorded under one policy ("private_address", "robots_disallowed") would be
        wrong under another, and a resumed run fetches only links with no fate yet: so a
        new policy is a new run, in a new folder, as new inputs are."""
        wanted = json.dumps(dict(policy), sort_keys=True, default=str)
        rows = self._query("SELECT value FROM meta WHERE key = 'fetch_policy'")
        if not rows:
            with self._transaction() as db:
                db.execute("INSERT INTO meta VALUES ('fetch_policy', ?)", (wanted,))
            return
        recorded, now = json.loads(rows[0]["value"]), json.loads(wanted)
        changed = sorted(key for key in {**recorded, **now} if recorded.get(key) != now.get(key))
        if changed:
            name = changed[0]
            raise StoreError(
                f"{self.path}: this run fetched with {name} = {recorded.get(name)!r}, now "
                f"{now.get(name)!r}; its links' fates depend on it: use a new output folder"
            )

    def _inputs_changed(self, known: int, now: str) -> None:
        raise StoreError(
            f"{self.path}: this run recorded {known} input links, the input now has {now}: "
            "the inputs changed; use a new output folder"
        )

    def unfinished_ids(self) -> list[int]:
        """The ids of links still to do: never fetched, or fetched but not yet extracted."""
        rows = self._query(
            "SELECT idx FROM links WHERE state IN ('pending', 'fetched') ORDER BY idx"
        )
        return [row["idx"] for row in rows]

    def unfinished_links(self) -> Iterator[tuple[int, str, str | None, Link]]:
        """The links still to do (not fetched, or not extracted yet) as (idx, source,
        raw_url, Link), in idx order: the shards are cut from these."""
        last = -1
        while rows := self._query(
            f"SELECT {_LINK_COLUMNS}, raw_url FROM links WHERE state != 'done' AND idx > ?"
            " ORDER BY idx LIMIT ?",
            (last, _READ_PAGE),
        ):
            for row in rows:
                yield row["idx"], row["source"], row["raw_url"], _link_from_row(row)
            last = rows[-1]["idx"]

    def pending_links(self, limit: int = 1000, after: int = -1) -> list[tuple[int, Link]]:
        """Up to `limit` links not fetched yet, as (idx, Link), in input order after `after`.

        Nothing is claimed: call it from one coordinator and hand the batches out (pass the
        last idx of one batch as `after` to get the next before the first is recorded).
        """
        rows = self._query(
            f"SELECT {_LINK_COLUMNS} FROM links WHERE state = 'pending' AND idx > ?"
            " ORDER BY idx LIMIT ?",
            (after, limit),
        )
        return [(row["idx"], _link_from_row(row)) for row in rows]

    def fetched_pages(self, limit: int = 100, after: int = -1) -> list[tuple[int, Link, Page]]:
        """Pages fetched but without an extraction result yet (a crash came in between).

        On resume, process these before fetching more: their bodies are stored, so they are
        never fetched again.
        """
        rows = self._query(
            f"SELECT {_LINK_COLUMNS}, http_status, final_url, fetched_at, content_type,"
            " attempts, body FROM links JOIN bodies USING (idx)"
            " WHERE state = 'fetched' AND idx > ? ORDER BY idx LIMIT ?",
            (after, limit),
        )
        return [(row["idx"], _link_from_row(row), _page_from_row(row)) for row in rows]

    # ----------------------------------------------------------------------------------------
    # robots.txt, shared by every batch (the fetcher's RobotsCache)
    # ----------------------------------------------------------------------------------------

    def pending_origins(self) -> list[str]:
        """The hosts ("scheme://host:port") of links still to fetch whose robots.txt has
        not been read yet."""
        origins: set[str] = set()
        for row in self._query("SELECT url FROM links WHERE state = 'pending' AND fetchable = 1"):
            with contextlib.suppress(ValueError, UnicodeError):  # the fetcher names bad URLs
                origins.add(origin_of(row["url"]))
        known = {row["origin"] for row in self._query("SELECT origin FROM robots")}
        return sorted(origins - known)

    def robots_get(self, origin: str) -> Outcome | None:
        rows = self._query("SELECT * FROM robots WHERE origin = ?", (origin,))
        if not rows:
            return None
        row = rows[0]
        failure = None
        if row["failure_reason"] is not None:
            failure = Verdict(row["failure_stage"], row["failure_reason"], row["failure_detail"])
        return Outcome(
            url=robots_url(origin),
            status=row["status"],
            content_type=row["content_type"],
            body=row["body"],
            failure=failure,
        )

    def robots_put(self, origin: str, outcome: Outcome) -> None:
        failure = outcome.failure
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO robots VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    origin,
                    outcome.status,
                    outcome.content_type,
                    outcome.body,
                    failure and failure.stage,
                    failure and failure.reason,
                    failure and failure.detail,
                ),
            )

    # ----------------------------------------------------------------------------------------
    # Pages and results
    # ----------------------------------------------------------------------------------------

    def record_pages(self, pages: Iterable[Page]) -> int:
        """Record fetched pages in one transaction; returns how many were new.

        Call it from the fetcher's per-page callback (`record_pages([page])`) so a page is on
        disk as soon as it arrives. A successful page's body is kept (compressed) until
        `record_results`; a failed one is final: fate "failed" (or "dropped" when robots.txt
        forbade it: a choice, not an error). Pages of links already past "pending" are
        ignored, so a page delivered twice is harmless.
        """
        recorded = 0
        with self._transaction() as db:
            for page in pages:
                idx, state = self._fetchable(db, page.url)
                if state != "pending":
                    continue
                recorded += 1
                if page.failure is None and page.body is not None:
                    _store_body(db, idx, page)
                else:
                    failure = page.failure or Verdict("fetch", "empty_response", "no body")
                    _finish(db, idx, failure, page.status)
                    db.execute(
                        "UPDATE links SET final_url = ?, fetched_at = ? WHERE idx = ?",
                        (page.final_url, page.fetched_at, idx),
                    )
        return recorded

    def record_page(self, page: Page) -> None:
        """`record_pages([page])`, shaped as the fetcher's `on_page` callback wants."""
        self.record_pages([page])

    def record_results(self, results: Iterable[tuple[int | str, Document | Verdict]]) -> int:
        """Record extraction/filter outcomes in one transaction; returns how many were new.

        Each result is (key, outcome): key is the link's idx or its (normalised) URL; outcome
        a Document (kept) or a Verdict (dropped, e.g. stage "extract" or "filter"). The page
        body is deleted then: its job is done. A link already done is left as it is, so a
        batch replayed after a crash changes nothing.
        """
        recorded = 0
        with self._transaction() as db:
            for key, outcome in results:
                idx, state = self._link_state(db, key)
                if state == "done":
                    continue
                if isinstance(outcome, Document):
                    if state != "fetched":
                        raise StoreError(
                            f"{self.path}: cannot keep a document for link {idx} ({key}): "
                            "no page was recorded for it"
                        )
                    db.execute(
                        "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?)",
                        (idx, outcome.title, outcome.text, content_hash(outcome.text)),
                    )
                    db.execute(
                        "UPDATE links SET state = 'done', fate = 'kept' WHERE idx = ?", (idx,)
                    )
                else:
                    _finish(db, idx, outcome, None)
                db.execute("DELETE FROM bodies WHERE idx = ?", (idx,))
                recorded += 1
        return recorded

    def record_shard_results(
        self, fates: Iterable[FateRecord], documents: Iterable[StoredDocument]
    ) -> int:
        """Record the outcomes a shard worked out in its own store; returns how many links
        changed. Links already done are left as they are, so reading a shard twice (a
        resumed run) changes nothing. A fate whose idx and URL do not name one of this
        run's links means the shard is not from this run: StoreError, nothing is written.
        """
        changed = 0
        with self._transaction() as db:
            for fate in fates:
                row = db.execute(
                    "SELECT url, state FROM links WHERE idx = ?", (fate.idx,)
                ).fetchone()
                if row is None or row["url"] != fate.url:
                    raise StoreError(
                        f"{self.path}: a shard reports link {fate.idx} as {fate.url!r}, which "
                        "this run does not have: the shards come from another run"
                    )
                if row["state"] == "done" or fate.fate == "pending":
                    continue
                db.execute(
                    "UPDATE links SET state = 'done', fate = ?, stage = ?, reason = ?,"
                    " detail = ?, http_status = ? WHERE idx = ?",
                    (fate.fate, fate.stage, fate.reason, fate.detail, fate.http_status, fate.idx),
                )
                changed += 1
            for doc in documents:
                db.execute(
                    "INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?)",
                    (doc.idx, doc.title, doc.text, doc.content_hash),
                )
                db.execute(
                    "UPDATE links SET fetched_at = ? WHERE idx = ?", (doc.fetched_at, doc.idx)
                )
        return changed

    def _fetchable(self, db: sqlite3.Connection, url: str) -> tuple[int, str]:
        row = db.execute(
            "SELECT idx, state FROM links WHERE url = ? AND fetchable = 1", (url,)
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no link to fetch has the URL {url!r}")
        return row["idx"], row["state"]

    def _link_state(self, db: sqlite3.Connection, key: int | str) -> tuple[int, str]:
        if isinstance(key, str):
            return self._fetchable(db, key)
        row = db.execute("SELECT idx, state FROM links WHERE idx = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no link has idx {key}")
        return row["idx"], row["state"]

    # ----------------------------------------------------------------------------------------
    # Documents and de-duplication
    # ----------------------------------------------------------------------------------------

    def iter_documents(self, batch_size: int = _READ_PAGE) -> Iterator[StoredDocument]:
        """Kept documents (duplicates already marked are left out), in idx order.

        Read page by page, so memory stays bounded and writers are never blocked for long.
        """
        last = -1
        while rows := self._query(_DOCUMENT_QUERY, (last, batch_size)):
            for row in rows:
                yield StoredDocument(*row)
            last = rows[-1]["idx"]

    def mark_duplicates(
        self,
        idx_list: Iterable[int],
        reason: str = "duplicate",
        detail: str | Mapping[int, str] = "",
    ) -> int:
        """Drop kept documents as duplicates (stage "dedup"); returns how many changed.

        `detail` is one text for all, or a text per idx (e.g. {17: "near duplicate of 3"}).
        The document rows stay in the database for inspection; the export leaves them out.
        """
        rows = [
            ("dedup", reason, detail.get(idx, "") if isinstance(detail, Mapping) else detail, idx)
            for idx in idx_list
        ]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE links SET fate = 'dropped', stage = ?, reason = ?, detail = ?"
                " WHERE idx = ? AND fate = 'kept'",
                rows,
            )
            return db.total_changes - before

    # ----------------------------------------------------------------------------------------
    # Reporting
    # ----------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """The funnel as flat counters, ready to log as metrics.

        "total" (input links), "kept", "dropped", "failed", "pending" (not fetched yet),
        "fetched" (awaiting extraction), and one "<fate>.<stage>.<reason>" entry per cause,
        e.g. "dropped.links.low_score" or "failed.fetch.http_404".
        """
        counts = {"total": 0, "kept": 0, "dropped": 0, "failed": 0, "pending": 0, "fetched": 0}
        rows = self._query(
            "SELECT state, fate, stage, reason, COUNT(*) AS n FROM links"
            " GROUP BY state, fate, stage, reason"
        )
        for row in rows:
            counts["total"] += row["n"]
            bucket = row["fate"] if row["state"] == "done" else row["state"]
            counts[bucket] += row["n"]
            if row["fate"] in ("dropped", "failed"):  # read back by `causes`
                key = f"{row['fate']}.{row['stage']}.{row['reason']}"
                counts[key] = counts.get(key, 0) + row["n"]
        return counts

    def fates(self, batch_size: int = _READ_PAGE) -> Iterator[FateRecord]:
        """Every input link's fate, in idx order (fate "pending" while not finished)."""
        last = -1
        while rows := self._query(
            "SELECT idx, source, raw_url, url, state, fate, stage, reason, detail, http_status"
            " FROM links WHERE idx > ? ORDER BY idx LIMIT ?",
            (last, batch_size),
        ):
            for row in rows:
                yield FateRecord(
                    idx=row["idx"],
                    source=row["source"],
                    raw_url=row["raw_url"],
                    url=row["url"],
                    fate=row["fate"] if row["state"] == "done" else "pending",
                    stage=row["stage"],
                    reason=row["reason"],
                    detail=row["detail"],
                    http_status=row["http_status"],
                )
            last = rows[-1]["idx"]


# --------------------------------------------------------------------------------------------
# Opening the database
# --------------------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    """Open `path`, creating the schema in a new file; StoreError for a foreign or old file."""
    make_private_file(path)  # the crawl's state: its owner's alone (the WAL files follow)
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    try:
        if not _is_ours(db, path):
            _create_schema(db, path)
        # WAL: readers and one writer at a time, across processes. synchronous=NORMAL is safe
        # against a killed process (only a power cut could lose the last commits, and never
        # corrupts the file) and much faster than FULL.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
    except BaseException as error:
        db.close()
        if isinstance(error, sqlite3.DatabaseError):
            message = f"{path} is not a usable gpt2lab corpus state database: {error}"
            raise StoreError(message) from None
        raise
    return db


def _is_ours(db: sqlite3.Connection, path: Path) -> bool:
    """True for our schema; False for an empty file (to be created); StoreError otherwise."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application_id == APPLICATION_ID:
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{path} has state schema version {version}, this gpt2lab reads version "
                f"{SCHEMA_VERSION}: finish that run with the gpt2lab that started it, or use "
                "a new output folder"
            )
        return True
    tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if application_id != 0 or tables:
        raise StoreError(
            f"{path} is an SQLite database that gpt2lab did not make; "
            "move it away or use a new output folder"
        )
    return False


def _create_schema(db: sqlite3.Connection, path: Path) -> None:
    # Two processes may open a new folder at once: the write lock makes one of them create
    # the schema, and the other finds it done when it gets the lock.
    db.execute("BEGIN IMMEDIATE")
    try:
        if not _is_ours(db, path):
            # Statement by statement: executescript() would commit the open transaction.
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# --------------------------------------------------------------------------------------------
# Rows <-> records
# --------------------------------------------------------------------------------------------


def _link_row(idx: int, decision: LinkDecision) -> tuple[Any, ...]:
    link, verdict = decision.link, decision.verdict
    if link is not None:
        return (
            *(idx, decision.source, decision.raw_url, link.url, link.karma, link.subreddit),
            *(link.post_id, link.created_utc, 1, "pending", None, None, None, None),
        )
    assert verdict is not None
    return (
        *(idx, decision.source, decision.raw_url, decision.url, None, None, None, None, 0),
        *("done", "dropped", verdict.stage, verdict.reason, verdict.detail),
    )


def _link_from_row(row: sqlite3.Row) -> Link:
    return Link(
        url=row["url"],
        karma=row["karma"],
        subreddit=row["subreddit"],
        post_id=row["post_id"],
        created_utc=row["created_utc"],
        source=row["source"],
    )


def _page_from_row(row: sqlite3.Row) -> Page:
    return Page(
        url=row["url"],
        final_url=row["final_url"],
        status=row["http_status"],
        content_type=row["content_type"],
        body=zlib.decompress(row["body"]),
        fetched_at=row["fetched_at"],
        attempts=row["attempts"],
    )


def _store_body(db: sqlite3.Connection, idx: int, page: Page) -> None:
    assert page.body is not None
    db.execute(
        "INSERT OR REPLACE INTO bodies VALUES (?, ?, ?, ?)",
        (idx, page.content_type, page.attempts, zlib.compress(page.body, 6)),
    )
    db.execute(
        "UPDATE links SET state = 'fetched', http_status = ?, final_url = ?, fetched_at = ?"
        " WHERE idx = ?",
        (page.status, page.final_url, page.fetched_at, idx),
    )


def _finish(db: sqlite3.Connection, idx: int, verdict: Verdict, status: int | None) -> None:
    """Give link `idx` its final, non-kept fate from `verdict`.

    A fetch that went wrong is "failed"; everything else is "dropped": robots.txt forbidding
    a page, or extraction and filters rejecting it, are decisions, not errors.
    """
    fate = "failed" if verdict.stage == "fetch" else "dropped"
    db.execute(
        "UPDATE links SET state = 'done', fate = ?, stage = ?, reason = ?, detail = ?,"
        " http_status = COALESCE(?, http_status) WHERE idx = ?",
        (fate, verdict.stage, verdict.reason, verdict.detail, status, idx),
    )
