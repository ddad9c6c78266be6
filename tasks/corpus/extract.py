"""Extraction: fetched HTML bytes -> the page's main text and title.

Three jobs, in the order a page meets them:

1. `decode_html` turns bytes into text. Web pages lie about their encoding (or say
   nothing), so it follows the browser's order of evidence and falls back sensibly; bytes
   that are not text at all (an image served as text/html) are dropped here.
2. `extract_document` runs trafilatura, which keeps the article and drops navigation,
   footers, ads and comment threads: WebText kept the text a reader came for.
3. `extract_pages` does this for many pages in worker processes, with a time limit per
   page: trafilatura is pure Python over lxml and a huge page can take many seconds, and
   the only safe way to stop such a call is to kill the process running it.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import functools
import gc
import logging
import math
import multiprocessing
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

import trafilatura
from pydantic import BaseModel, ConfigDict, Field
from trafilatura.metadata import extract_title
from trafilatura.utils import load_html

from tasks.corpus.filters import FilterChain, FilterSettings
from tasks.corpus.records import Document, Page, Verdict

logger = logging.getLogger(__name__)

STAGE = "extract"


class ExtractSettings(BaseModel):
    """How main text is extracted. Every field has a default chosen for WebText-like text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_limit_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one page may take before its worker is killed. trafilatura does "
        "about 10 pages/s on real pages (median 25 KB), so 10 s is 100x a typical page; it "
        "still cuts the rare multi-megabyte page (one of 8.4 MB took 12 s).",
    )
    workers: int = Field(
        default=2,
        ge=0,
        description="Worker processes. 0 runs inline in the caller: no time limit, for debugging.",
    )
    include_comments: bool = Field(
        default=False, description="Keep readers' comment threads (WebText wanted the article)."
    )
    include_tables: bool = Field(
        default=False,
        description="Keep <table> contents. Off: flattened cells read as word salad, and "
        "WebText's extractors (Dragnet, Newspaper) dropped them too.",
    )
    favor_precision: bool = Field(
        default=False,
        description="trafilatura's stricter mode: less boilerplate but more lost paragraphs. "
        "Off: the balanced default scores best in trafilatura's own evaluation, and the "
        "quality filters that follow catch boilerplate-heavy pages.",
    )
    fast: bool = Field(
        default=False,
        description="Skip trafilatura's fallback extractors (readability, jusText): faster, "
        "but loses text on pages its main heuristics misread.",
    )
    max_html_bytes: int = Field(
        default=5_000_000,
        gt=0,
        description="Larger bodies are dropped unread (200x a median page): they are listings "
        "or data dumps far more often than articles, and would only hit the time limit.",
    )
    chunk_size: int = Field(
        default=8,
        ge=1,
        description="Pages handed to a worker at a time: fewer round trips, yet small "
        "enough that both workers stay busy until the end of a batch.",
    )


# ---------------------------------------------------------------------------------------
# 1. Bytes -> text
# ---------------------------------------------------------------------------------------

# File formats that are not text, by their first bytes ("magic numbers").
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"RIFF", "RIFF (WebP/WAV/AVI)"),
    (b"OggS", "Ogg"),
    (b"ID3", "MP3"),
    (b"\x7fELF", "ELF"),
    (b"wOFF", "WOFF font"),
    (b"wOF2", "WOFF2 font"),
    (b"\xd0\xcf\x11\xe0", "MS Office"),
)
# Control bytes never found in text (tab, newline, form feed, carriage return and ESC,
# which ISO-2022 encodings use, are allowed).
_CONTROL_BYTES = bytes([*range(0x01, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_SNIFF_BYTES = 4096  # how far into the body we look for magic, NULs and <meta charset>

# A byte-order mark is unambiguous, so (as in browsers) it beats any declaration.
# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([\w.:\-]+)""", re.IGNORECASE)
# Covers both <meta charset="x"> and <meta http-equiv="Content-Type" content="...; charset=x">.
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:\-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([\w.:\-]+)""", re.IGNORECASE)

# Browsers read "latin-1" and "ascii" labels as windows-1252 (the WHATWG Encoding
# standard): servers say latin-1 but send cp1252's curly quotes and euro sign.
_WESTERN = "cp1252"
_WESTERN_ALIASES = {"ascii", "latin-1", "iso8859-1", "cp1252"}
_WIDE_UNICODE = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def _latin1_for_undefined(error: UnicodeError) -> tuple[str, int]:
    """cp1252 leaves 5 byte values undefined; read those as latin-1 (as browsers do)."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("gpt2lab-latin1", _latin1_for_undefined)


def _codec_name(label: str) -> str | None:
    """Python's name for an encoding label ("UTF8", "latin1" ...); None when unknown."""
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    return _WESTERN if name in _WESTERN_ALIASES else name


def _declared_encodings(body: bytes, content_type: str | None) -> list[str]:
    """Encodings the page claims, strongest evidence first: BOM, HTTP header, <meta>/<?xml."""
    found: list[str] = []
    for bom, name in _BOMS:
        if body.startswith(bom):
            found.append(name)
            break
    if content_type and (match := _HEADER_CHARSET.search(content_type)):
        found.append(match.group(1))
    head = body[:_SNIFF_BYTES]
    for pattern in (_META_CHARSET, _XML_ENCODING):
        if match := pattern.search(head):
            name = _codec_name(match.group(1).decode("ascii", "replace"))
            # A page that can declare itself in ASCII is not UTF-16: WHATWG reads it as UTF-8.
            found.append("utf-8" if name in _WIDE_UNICODE else match.group(1).decode("ascii"))
    names = [_codec_name(label) for label in found]
    return list(dict.fromkeys(name for name in names if name))  # unique, order kept


def _binary_kind(body: bytes, encodings: list[str]) -> str | None:
    """What kind of non-text the body is, or None when it looks like text."""
    for magic, kind in _BINARY_SIGNATURES:
        if body.startswith(magic):
            return kind
    head = body[:_SNIFF_BYTES]
    if any(name in _WIDE_UNICODE for name in encodings):
        return None  # UTF-16/32 text is full of NUL bytes
    if b"\x00" in head:
        return "NUL bytes"
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls > 0.1 * len(head):
        return "control bytes"
    return None


def _decode_mostly(body: bytes, codec: str) -> str | None:
    """Decode with `codec`; a few bad bytes become U+FFFD. None when the bytes are mostly
    not in that encoding, i.e. more bad sequences than well-formed non-ASCII characters.

    Why this rule: a UTF-8 page truncated mid-character, or with one stray byte, keeps
    all its good text; a cp1252 page that calls itself UTF-8 has almost no valid
    multi-byte sequences, so it fails here and the next candidate gets it.
    """
    try:
        return body.decode(codec)
    except UnicodeDecodeError:
        pass
    except LookupError:
        return None
    text = body.decode(codec, errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for char in text if char > "\x7f") - bad
    return text if good > bad else None


def _is_utf8_with_non_ascii(body: bytes) -> bool:
    if body.isascii():
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_html(body: bytes, content_type: str | None) -> str | Verdict:
    """The text of an HTML body, or Verdict("extract", "binary_content") for non-text bytes.

    Order of evidence (close to what browsers do): byte-order mark, the Content-Type
    header's charset, <meta charset> / http-equiv / <?xml encoding>, then strict-ish UTF-8,
    then windows-1252, which never fails and is what undeclared legacy Western pages use.
    One exception: a page declared latin-1/ASCII/cp1252 whose bytes are valid UTF-8 with
    non-ASCII characters is read as UTF-8 (multi-byte UTF-8 sequences almost never occur
    by chance in real latin-1 text, while servers that mislabel UTF-8 are common).
    """
    if not body:
        return ""
    declared = _declared_encodings(body, content_type)
    if kind := _binary_kind(body, declared):
        return Verdict(STAGE, "binary_content", f"{kind}; Content-Type {content_type!r}")
    for codec in declared:
        if codec in _WIDE_UNICODE and b"\x00" not in body[:_SNIFF_BYTES]:
            continue  # HTML in UTF-16/32 has NULs in every ASCII tag: this label is wrong
        if codec == _WESTERN:
            if _is_utf8_with_non_ascii(body):
                return body.decode("utf-8")
            return body.decode(_WESTERN, errors="gpt2lab-latin1")
        if (text := _decode_mostly(body, codec)) is not None:
            return text.removeprefix("\ufeff")
    if (text := _decode_mostly(body, "utf-8")) is not None:
        return text.removeprefix("\ufeff")
    return body.decode(_WESTERN, errors="gpt2lab-latin1")


# ---------------------------------------------------------------------------------------
# 2. HTML -> Document
# ---------------------------------------------------------------------------------------


def trafilatura_options(settings: ExtractSettings) -> dict[str, object]:
    """The options we extract with (the benchmark's extraction-only ceiling uses them too)."""
    return dict(
        fast=settings.fast,
        favor_precision=settings.favor_precision,
        include_comments=settings.include_comments,
        include_tables=settings.include_tables,
        include_images=False,
        include_links=False,
        # No cross-document dedup inside trafilatura: its cache depends on which pages a
        # worker saw before, so results would depend on scheduling. dedup.py does it.
        deduplicate=False,
        # <noscript> holds "please enable JavaScript", never the article; trafilatura keeps it.
        prune_xpath="//noscript",
    )


def extract_document(url: str, html: str, settings: ExtractSettings) -> Document | Verdict:
    """Main text and title of one page, or Verdict("extract", "no_main_text")."""
    tree = load_html(html)
    if tree is None:
        return Verdict(STAGE, "no_main_text", "empty or unparsable HTML")
    # The title comes from trafilatura's metadata helper alone: `with_metadata=True` would
    # also search for the publication date (htmldate), which costs about 40% more time.
    title = (extract_title(tree) or "").strip() or None
    result = trafilatura.bare_extraction(
        tree,  # parsed once; trafilatura copies it before pruning
        url=url,
        **trafilatura_options(settings),
    )
    text = (getattr(result, "text", None) or "").strip()
    if not text:
        return Verdict(STAGE, "no_main_text", "trafilatura found no main text")
    return Document(url=url, title=title, text=text)


def _extract_page(
    url: str,
    body: bytes | None,
    content_type: str | None,
    settings: ExtractSettings,
    filters: FilterSettings | None = None,
) -> Document | Verdict:
    """decode + extract (+ filter) one page; never raises: a broken page must not stop a
    batch. Filtering here, in the worker, keeps that CPU work off the calling process."""
    result = _decode_and_extract(url, body, content_type, settings)
    if filters is None or isinstance(result, Verdict):
        return result
    return _filter_chain(filters.model_dump_json()).apply([result])[0]


@functools.cache
def _filter_chain(filters_json: str) -> FilterChain:
    """One chain per process and settings (keyed by JSON: the settings hold lists)."""
    return FilterChain.from_settings(FilterSettings.model_validate_json(filters_json))


def _decode_and_extract(
    url: str, body: bytes | None, content_type: str | None, settings: ExtractSettings
) -> Document | Verdict:
    if body is None:
        return Verdict(STAGE, "no_body", "the fetch returned no body")
    if len(body) > settings.max_html_bytes:
        return Verdict(STAGE, "too_large", f"{len(body)} bytes > {settings.max_html_bytes}")
    try:
        html = decode_html(body, content_type)
        if isinstance(html, Verdict):
            return html
        return extract_document(url, html, settings)
    except Exception as error:  # lxml and trafilatura raise many kinds; keep the run going
        return Verdict(STAGE, "extractor_error", f"{type(error).__name__}: {error}"[:300])


# ---------------------------------------------------------------------------------------
# 3. Many pages, in worker processes, each with a time limit
# ---------------------------------------------------------------------------------------

# "spawn" starts each worker as a fresh interpreter. "fork" would copy the caller, and
# the caller runs in threads (Prefect): forking a threaded process can copy a held lock
# and hang the child.
_CONTEXT = multiprocessing.get_context("spawn")
_READY = "ready"
_STARTUP_LIMIT_S = 120.0  # a fresh worker imports trafilatura: about 1 s, more under load


def _worker_main(conn: Connection) -> None:
    """Loop of a worker process: receive (settings, filters, pages), send one result per
    page."""
    # Ctrl-C goes to the whole process group; the parent decides what happens to us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # trafilatura logs every discarded page; our verdicts already say why.
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message is None:
            return
        settings, filters, items = message
        for position, url, body, content_type in items:
            try:
                result = _extract_page(url, body, content_type, settings, filters)
                conn.send((position, result))
            except OSError:
                return  # the parent is gone
        _set_long_lived_state_aside()


def _set_long_lived_state_aside() -> None:
    """Keep Python's garbage collector from re-scanning what lives for the whole worker.

    Parsing and filtering a page make many short-lived containers (lxml proxies, n-gram
    tuples), which keep triggering the cyclic garbage collector, and each of its full
    passes walks every object alive: trafilatura's and lxml's modules, the language
    model. That scanning was about 40% of the filters' time. Whatever survives a whole
    batch is such long-lived state, so once the batch's garbage is collected, `gc.freeze`
    moves the survivors out of the collector's view (it never frees them; they were
    staying anyway).
    """
    gc.collect()
    gc.freeze()


class _Worker:
    """One worker process, the parent's end of its pipe, and the pages it holds."""

    def __init__(self) -> None:
        parent_end, child_end = _CONTEXT.Pipe(duplex=True)
        self.process = _CONTEXT.Process(
            target=_worker_main, args=(child_end,), name="gpt2lab-extract", daemon=True
        )
        self.process.start()
        child_end.close()  # else we would never see EOF when the child dies
        self.conn = parent_end
        self.ready = False
        self.started_at = time.monotonic()
        self.assigned: deque[int] = deque()  # positions sent, not yet answered, in order
        self.deadline = math.inf  # when the page it is working on runs out of time

    def stop(self, grace_s: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):  # it may be dead already
            self.conn.send(None)
        self.process.join(grace_s)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ExtractionPool:
    """A reusable set of extraction worker processes with a per-page time limit.

    Why not `multiprocessing.Pool` or `ProcessPoolExecutor`: neither can stop one task
    that runs too long without losing the whole pool's work. Here each worker answers
    page by page, so when one page overruns, exactly that worker is killed and replaced,
    and the pages it had not started yet go back in the queue.

    Use it as a context manager, or call `close()`; `extract_pages` keeps one shared pool
    per worker count, closed at interpreter exit.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.size = workers
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # one batch at a time: workers hold per-batch state

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers = []

    def run(
        self,
        pages: Sequence[Page],
        settings: ExtractSettings,
        filters: FilterSettings | None = None,
    ) -> list[Document | Verdict]:
        """One result per page, in the pages' order."""
        if not pages:
            return []
        with self._lock:
            while len(self._workers) < self.size:
                self._workers.append(_Worker())
            try:
                return _Batch(self._workers, pages, settings, filters).run()
            except BaseException:
                # Interrupted (Ctrl-C, a worker that cannot start): workers may still be
                # busy with this batch's pages, whose answers must not reach the next batch.
                for worker in self._workers:
                    worker.kill()
                self._workers = []
                raise


class _Batch:
    """The bookkeeping of one `ExtractionPool.run` call."""

    def __init__(
        self,
        workers: list[_Worker],
        pages: Sequence[Page],
        settings: ExtractSettings,
        filters: FilterSettings | None,
    ) -> None:
        self.workers = workers  # the pool's list: replacements are visible to the pool
        self.pages = pages
        self.settings = settings
        self.filters = filters
        self.results: list[Document | Verdict | None] = [None] * len(pages)
        self.todo: deque[int] = deque(range(len(pages)))
        self.missing = len(pages)

    def run(self) -> list[Document | Verdict]:
        while self.missing:
            self._hand_out_work()
            waitables = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
            wait(waitables, timeout=self._seconds_to_next_deadline())
            for slot, worker in enumerate(self.workers):
                self._collect(slot, worker)
        assert all(result is not None for result in self.results)
        return self.results  # type: ignore[return-value]  # no None left

    def _hand_out_work(self) -> None:
        """Give idle workers their next chunk. Only idle workers: they are blocked reading
        their pipe, so sending never blocks us while another worker needs watching."""
        for worker in self.workers:
            if not (worker.ready and not worker.assigned and self.todo):
                continue
            # Smaller chunks near the end, so no worker sits idle while one finishes a pile.
            share = math.ceil(len(self.todo) / (2 * len(self.workers)))
            count = max(1, min(self.settings.chunk_size, share))
            chunk = [self.todo.popleft() for _ in range(count)]
            items = [self._item(position) for position in chunk]
            try:
                worker.conn.send((self.settings, self.filters, items))
            except OSError:  # it just died; `_collect` replaces it
                self.todo.extendleft(reversed(chunk))
                continue
            worker.assigned.extend(chunk)
            worker.deadline = time.monotonic() + self.settings.time_limit_s

    def _item(self, position: int) -> tuple[int, str, bytes | None, str | None]:
        # Plain tuples: cheaper to pickle than Page objects, and the worker needs no more.
        page = self.pages[position]
        return position, page.url, page.body, page.content_type

    def _seconds_to_next_deadline(self) -> float:
        deadlines = [w.deadline for w in self.workers if w.assigned]
        deadlines += [w.started_at + _STARTUP_LIMIT_S for w in self.workers if not w.ready]
        return max(0.0, min(deadlines, default=1.0) - time.monotonic())

    def _collect(self, slot: int, worker: _Worker) -> None:
        """Read what the worker sent; replace it if it died, overran or never started."""
        self._drain(worker)
        if worker.process.is_alive():
            now = time.monotonic()
            if worker.assigned and now >= worker.deadline:
                self._replace(slot, "timeout", f"over {self.settings.time_limit_s:g} s")
            elif not worker.ready and now - worker.started_at > _STARTUP_LIMIT_S:
                raise RuntimeError(f"extraction worker did not start in {_STARTUP_LIMIT_S} s")
            return
        self._drain(worker)  # it may have died after sending results we have not read yet
        if not worker.ready:
            worker.kill()
            raise RuntimeError(
                f"extraction worker died while starting (exit code {worker.process.exitcode})"
            )
        self._replace(slot, "worker_crashed", f"exit code {worker.process.exitcode}")

    def _drain(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._receive(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass  # the child end is closed: it died; the caller looks at the process

    def _receive(self, worker: _Worker, message: object) -> None:
        if message == _READY:
            worker.ready = True
            return
        position, result = message  # type: ignore[misc]
        if worker.assigned and worker.assigned[0] == position:
            worker.assigned.popleft()
        self.results[position] = result
        self.missing -= 1
        worker.deadline = time.monotonic() + self.settings.time_limit_s

    def _replace(self, slot: int, reason: str, detail: str) -> None:
        """Kill the worker, charge the page it was on, requeue the rest, start a new one."""
        worker = self.workers[slot]
        worker.kill()
        if worker.assigned:
            position = worker.assigned.popleft()
            logger.warning("extract %s: %s (%s)", self.pages[position].url, reason, detail)
            self.results[position] = Verdict(STAGE, reason, detail)
            self.missing -= 1
            self.todo.extendleft(reversed(worker.assigned))
        self.workers[slot] = _Worker()


_SHARED_POOLS: dict[int, ExtractionPool] = {}
_SHARED_POOLS_LOCK = threading.Lock()


def shutdown_pools() -> None:
    """Stop the shared worker processes (also runs at interpreter exit)."""
    with _SHARED_POOLS_LOCK:
        pools = list(_SHARED_POOLS.values())
        _SHARED_POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_pools)


def _shared_pool(workers: int) -> ExtractionPool:
    with _SHARED_POOLS_LOCK:
        if workers not in _SHARED_POOLS:
            _SHARED_POOLS[workers] = ExtractionPool(workers)
        return _SHARED_POOLS[workers]


def extract_pages(
    pages: Sequence[Page], settings: ExtractSettings, filters: FilterSettings | None = None
) -> list[Document | Verdict]:
    """Extract every page: one Document or Verdict per page, in the same order.

    With `filters`, each extracted document also goes through the filter chain in the
    worker (a dropped one comes back as its filter Verdict), so filtering runs in parallel
    too and within the same per-page time limit.

    Pages run in `settings.workers` processes (a pool kept between calls, since starting a
    worker costs about a second), each page within `settings.time_limit_s`; an overrun
    gives Verdict("extract", "timeout"). A page whose fetch failed keeps its fetch verdict.
    """
    results: list[Document | Verdict | None] = [page.failure for page in pages]
    to_extract = [i for i, page in enumerate(pages) if page.failure is None]
    if settings.workers == 0 or multiprocessing.current_process().daemon:
        if settings.workers:
            # A daemonic process (e.g. a Dask worker) may not start children.
            logger.warning("extract: running inline (no time limit) in a daemonic process")
        extracted = [
            _extract_page(pages[i].url, pages[i].body, pages[i].content_type, settings, filters)
            for i in to_extract
        ]
    else:
        chosen = [pages[i] for i in to_extract]
        extracted = _shared_pool(settings.workers).run(chosen, settings, filters)
    for position, result in zip(to_extract, extracted, strict=True):
        results[position] = result
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]  # every page has its result
