"""Contamination: how much of an eval set the training corpus already holds, word for word.

The GPT-2 paper (section 4, "Generalization vs Memorization") asked whether WebText
contains the test sets it reports on. It normalised every text to lower-cased alphanumeric
words separated by single spaces, then measured the share of each test set's 8-grams that
also occur in WebText's training set. A model that scores well on text it has read may be
remembering, not generalising; this module gives that share for a gpt2lab corpus.

How, and why not the paper's Bloom filters. The paper put WebText's 8-grams (billions of
them) into Bloom filters: a fixed memory budget, paid for with false positives (it bounded
their rate by 1e-8). Here the sizes are the other way round: an eval set has thousands to a
few million 8-grams, the corpus may be many GB. So the eval side is held, and the corpus
streams past it once, document by document, and is never held:

1. each eval word gets a small integer id, and each eval 8-gram a 64-bit hash of its 8 ids;
   those hashes sit in a sorted numpy array (8 bytes per 8-gram, plus a table of flags
   that answers most look-ups before a binary search: see `_HashSet`);
2. each corpus document is cut into the same words, mapped to the eval ids (a word no eval
   set uses maps to 0, so no 8-gram through it can match), and all its 8-grams are hashed
   at once with numpy and looked up in the sorted array;
3. a hash match is kept with its 8 actual ids, and an eval 8-gram counts as found only if
   exactly those 8 words were seen: a hash collision can never be counted, so the answer
   is exact (no false positives), which a Bloom filter cannot promise.

Memory is bounded by the eval sets (their words, ids and hashes, and the 8-grams found),
not by the corpus: one document (or a piece of about 128 K characters of a longer one) is
in memory at a time. An 8-gram never spans two documents, nor two fields of an eval row
(the fields are separate texts, such as a question and its answer: an 8-gram across two of
them is in neither). A row's 8-grams are those of all its declared fields, counted by
position: a field of 20 words has 13, one of fewer than 8 words none.

The corpus is read with the encode flow's reader (`tasks/encode/corpus_source.py`), so it
is any folder the corpus flow wrote (or a dataset saved with `save_to_disk`), and its
fingerprint is the one recorded in that folder's corpus.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from model.atomic_files import write_file_atomically
from model.errors import Gpt2labError
from tasks.encode.corpus_source import CorpusSource, iter_text_tables, open_corpus, text_bytes
from tasks.evals.data import Source, task_rows
from tasks.evals.task import EvalTask, Row

NGRAM = 8  # the paper's n
# Part of every cache key: change it whenever normalisation or counting changes.
METHOD = "gpt2-paper-8grams/lowercase-alphanumeric-words/exact/v1"

# A word: a run of letters and digits, of any script. Python's \w also takes "_", which
# is punctuation here, hence "not (non-word or _)".
_WORD = re.compile(r"[^\W_]+")
_NOT_WORD = re.compile(r"[\W_]")
_PIECE_CHARS = 1 << 17  # a longer document is read in pieces of about this many characters
_FLUSH_WORDS = 1 << 16  # corpus words hashed together: numpy's temporaries stay ~0.5 MB each
_ROWS_PER_READ = 256  # corpus documents taken from Arrow at a time
# Odd 64-bit multiplier of the polynomial hash; numpy's uint64 arithmetic wraps mod 2**64.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_FLAGS_PER_HASH = 32  # slots of _HashSet's flag table per stored hash (1 byte each)
_MAX_FLAG_BITS = 27  # at most 128 MiB of flags (reached at 4 million eval n-grams)


class ContaminationError(Gpt2labError):
    """A contamination cache or input that cannot be used; the message names it."""


# ---------------------------------------------------------------------------------------
# Normalisation, as the paper's


def words(text: str) -> list[str]:
    """The text's lower-cased alphanumeric words: `"Don't STOP!"` -> `["don", "t", "stop"]`."""
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """The paper's normal form: lower-cased alphanumeric words, single spaces between them."""
    return " ".join(words(text))


def ngrams(text: str, n: int = NGRAM) -> list[str]:
    """The text's normalised n-grams, one per word position (for reading; the scan itself
    works on integer ids)."""
    found = words(text)
    return [" ".join(found[i : i + n]) for i in range(len(found) - n + 1)]


def row_texts(row: Row, fields: Sequence[str]) -> list[str]:
    """The texts of a row that count: every declared field, in order."""
    return [str(row[name]) for name in fields]


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class RowOverlap:
    """One eval row: its 8-grams (one per word position) and how many occur in the corpus."""

    ngrams: int
    found: int

    @property
    def share(self) -> float:
        """found / ngrams; 0.0 for a row too short to have any (it cannot overlap)."""
        return self.found / self.ngrams if self.ngrams else 0.0


@dataclass(frozen=True)
class Contamination:
    """One eval set against one corpus (`corpus` is its fingerprint)."""

    rows: tuple[RowOverlap, ...]
    corpus: str
    n: int = NGRAM

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def ngram_overlap(self) -> float:
        """The paper's figure: the share of all the set's n-grams found in the corpus."""
        total = sum(row.ngrams for row in self.rows)
        return sum(row.found for row in self.rows) / total if total else 0.0

    @property
    def rows_overlapping(self) -> float:
        """The share of rows with at least one n-gram found in the corpus."""
        return sum(row.found > 0 for row in self.rows) / len(self.rows) if self.rows else 0.0

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "corpus": self.corpus,
            "rows": self.n_rows,
            "ngram_overlap": self.ngram_overlap,
            "rows_overlapping": self.rows_overlapping,
            "per_row": [[row.ngrams, row.found] for row in self.rows],  # [ngrams, found]
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Contamination:
        rows = tuple(RowOverlap(int(ngrams), int(found)) for ngrams, found in data["per_row"])
        return cls(rows=rows, corpus=str(data["corpus"]), n=int(data["n"]))


@dataclass(frozen=True)
class ScanProgress:
    """How far a corpus scan is: documents read of `total`, and their UTF-8 bytes."""

    documents: int
    total: int
    bytes: int


Progress = Callable[[ScanProgress], None]


# ---------------------------------------------------------------------------------------
# The index: eval n-grams in, corpus streamed past, exact counts out


def _hash_rows(grams: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of ids (one n-gram a row): h = ((i0*M + i1)*M + i2)...,
    mod 2**64. Eval and corpus n-grams go through this same function, so equal ids give
    equal hashes; unequal ids rarely do, and `OverlapIndex` checks the ids on every match."""
    hashes = grams[:, 0].astype(np.uint64)
    for k in range(1, grams.shape[1]):
        hashes *= _MULTIPLIER
        hashes += grams[:, k].astype(np.uint64)
    return hashes


class _HashSet:
    """A sorted array of 64-bit hashes, asked "which of these values are in it?" millions
    of times. A binary search per value is slow (each a string of cache misses), so a
    value is first looked up in a table of flags indexed by its top bits, about 32 slots
    per stored hash: nearly all values that are absent land on an empty slot and are
    dropped at the cost of one memory read. Only the rest are searched. (The flags are a Bloom
    filter with one hash function; the binary search makes the answer exact.)"""

    def __init__(self, hashes: np.ndarray) -> None:
        # np.sort and a comparison, not np.unique: numpy 2's np.unique is ~100x slower here.
        ordered = np.sort(hashes)
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self.sorted = ordered[first]
        slots = _FLAGS_PER_HASH * len(self.sorted)
        bits = min(max(slots.bit_length(), 10), _MAX_FLAG_BITS)  # a power of two >= slots
        self._shift = np.uint64(64 - bits)
        self._flags = np.zeros(1 << bits, dtype=bool)
        self._flags[self.sorted >> self._shift] = True

    def contains(self, values: np.ndarray) -> np.ndarray:
        """A boolean mask: which `values` are stored hashes."""
        mask = self._flags[values >> self._shift]
        candidates = np.flatnonzero(mask)
        if len(candidates):
            maybe = values[candidates]
            where = np.minimum(np.searchsorted(self.sorted, maybe), len(self.sorted) - 1)
            mask[candidates] = self.sorted[where] == maybe
        return mask


def _hash_windows(ids: np.ndarray, n: int) -> np.ndarray:
    """The hash of every run of `n` consecutive ids (a view of the ids: nothing copied)."""
    if len(ids) < n:
        return np.empty(0, dtype=np.uint64)
    return _hash_rows(np.lib.stride_tricks.sliding_window_view(ids, n))


class OverlapIndex:
    """The eval sets' n-grams, and which of them a stream of documents contains.

    `add` every eval text first (it returns the text's ids, which `count` takes later),
    then `scan` the corpus once, then `count` each text's n-grams found.
    """

    def __init__(self, n: int = NGRAM) -> None:
        if n < 1:
            raise ValueError(f"n-gram length must be at least 1, got {n}")
        self.n = n
        self._ids: dict[str, int] = {}  # eval word -> id >= 1; 0 means "no eval word"
        self._hash_parts: list[np.ndarray] = []
        # Corpus n-grams whose hash matched, as the bytes of their n int32 ids (32 bytes for
        # 8 ids: a third of what a tuple of Python ints would take).
        self._seen: set[bytes] = set()
        self._seen_hashes = _HashSet(np.empty(0, dtype=np.uint64))
        self._scanned = False

    def add(self, text: str) -> np.ndarray:
        """Register an eval text; its word ids (to give back to `count`)."""
        if self._scanned:
            raise RuntimeError("OverlapIndex.add after scan: add every eval text first")
        ids = self._ids
        encoded = np.array(
            [ids.setdefault(word, len(ids) + 1) for word in words(text)], dtype=np.int32
        )
        self._hash_parts.append(_hash_windows(encoded, self.n))
        return encoded

    def scan(self, documents: Iterable[str]) -> None:
        """Read every document once and remember the eval n-grams' hashes it matches."""
        if self._scanned:
            raise RuntimeError("OverlapIndex.scan runs once")
        self._scanned = True
        table = _HashSet(np.concatenate([np.empty(0, np.uint64), *self._hash_parts]))
        self._hash_parts = []
        lookup = self._ids.get
        buffer = array("i")  # int32, like the eval ids
        for document in documents:
            for piece in _pieces(document, _PIECE_CHARS):
                # Unknown words map to 0: the default `repeat(0)` hands dict.get, in C.
                buffer.extend(map(lookup, words(piece), repeat(0)))
                if len(buffer) >= _FLUSH_WORDS:
                    self._match(buffer, table)
                    # Keep the last n-1 ids: the next n-gram starts among them.
                    del buffer[: max(0, len(buffer) - (self.n - 1))]
            buffer.append(0)  # a document boundary: no n-gram runs across it
        self._match(buffer, table)
        seen = np.frombuffer(b"".join(self._seen), dtype=np.int32).reshape(-1, self.n)
        self._seen_hashes = _HashSet(_hash_rows(seen))

    def _match(self, buffer: array, table: _HashSet) -> None:
        ids = np.frombuffer(buffer, dtype=np.int32)
        for start in np.flatnonzero(table.contains(_hash_windows(ids, self.n))).tolist():
            self._seen.add(ids[start : start + self.n].tobytes())

    def count(self, ids: np.ndarray) -> tuple[int, int]:
        """(n-grams, n-grams found in the scanned documents) of an added text's ids."""
        if not self._scanned:
            raise RuntimeError("OverlapIndex.count before scan")
        hashes = _hash_windows(ids, self.n)
        maybe = np.flatnonzero(self._seen_hashes.contains(hashes)).tolist()
        found = sum(ids[i : i + self.n].tobytes() in self._seen for i in maybe)
        return len(hashes), found


def _pieces(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each cut just after a non-word
    character, so no word is split and the pieces' words, in order, are the text's words."""
    start = 0
    while len(text) - start > size:
        cut = _NOT_WORD.search(text, start + size)
        if cut is None:
            break
        yield text[start : cut.end()]
        start = cut.end()
    yield text[start:]


def measure_overlap(
    eval_sets: Mapping[str, Sequence[Sequence[str]]],
    documents: Iterable[str],
    corpus: str,
    n: int = NGRAM,
) -> dict[str, Contamination]:
    """Each eval set's contamination by `documents`, read once for all the sets.

    `eval_sets` maps a name to its rows, each row the list of its texts (`row_texts`);
    `corpus` is the documents' fingerprint, recorded in the results.
    """
    index = OverlapIndex(n)
    encoded = {
        name: [[index.add(text) for text in row] for row in rows]
        for name, rows in eval_sets.items()
    }
    index.scan(documents)
    results = {}
    for name, rows in encoded.items():
        per_row = []
        for texts in rows:
            counts = [index.count(ids) for ids in texts]
            per_row.append(RowOverlap(sum(c[0] for c in counts), sum(c[1] for c in counts)))
        results[name] = Contamination(rows=tuple(per_row), corpus=corpus, n=n)
    return results


# ---------------------------------------------------------------------------------------
# Reading a corpus, and the eval tasks against it


def corpus_documents(source: CorpusSource, progress: Progress | None = None) -> Iterator[str]:
    """The corpus's texts, one at a time, read from its Arrow files a few hundred rows at
    a time (memory-mapped; only the document in hand becomes a Python string).
    `progress` hears after each read."""
    dataset = source.open()
    read_bytes = 0
    for first, texts in iter_text_tables(source, dataset, 0, source.documents, _ROWS_PER_READ):
        for chunk in texts.chunks:
            for value in chunk:
                yield value.as_py()
        read_bytes += int(text_bytes(texts).sum())
        if progress is not None:
            progress(ScanProgress(first + len(texts), source.documents, read_bytes))


def cache_key(corpus: str, task: EvalTask, rows: Sequence[Sequence[str]], n: int = NGRAM) -> str:
    """What a cached result depends on: the method, the corpus fingerprint, the task's name
    and version and the exact texts scored (so `--limit`, `--source` or an edited data file
    is another key)."""
    record = json.dumps([METHOD, n, corpus, task.name, task.version, rows], ensure_ascii=False)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()


class ContaminationCache:
    """Results of earlier scans: one small JSON file per (task, key) in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, task: EvalTask, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", task.name)
        return self.folder / f"{safe}-v{task.version}-{key[:16]}.json"

    def get(self, task: EvalTask, key: str) -> Contamination | None:
        path = self._path(task, key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != key:  # two keys that share a file name: not ours
                return None
            return Contamination.from_dict(data["contamination"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ContaminationError(
                f"contamination cache {path}: unreadable; delete it to scan again"
            ) from None

    def put(self, task: EvalTask, key: str, value: Contamination) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"key": key, "task": task.name, "version": task.version}
        text = json.dumps(record | {"contamination": value.to_dict()}, indent=1)
        write_file_atomically(self._path(task, key), text + "\n")


def tasks_contamination(
    tasks: Sequence[EvalTask],
    corpus: str | Path,
    cache: ContaminationCache | None = None,
    *,
    source: Source = "local",
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Contamination]:
    """Each task's contamination by `corpus` (a corpus flow's output folder), by task name.

    The rows are those the evaluation scores (`task_rows(task, source, limit)`), in order.
    Results in `cache` are reused; the tasks it lacks share one scan of the corpus.
    """
    corpus_source = open_corpus(corpus)
    texts = {
        task.name: [row_texts(row, task.fields) for row in task_rows(task, source, limit)]
        for task in tasks
    }
    keys = {t.name: cache_key(corpus_source.fingerprint, t, texts[t.name]) for t in tasks}
    found = {t.name: cache.get(t, keys[t.name]) if cache else None for t in tasks}
    missing = [task for task in tasks if found[task.name] is None]
    if missing:
        fresh = measure_overlap(
            {task.name: texts[task.name] for task in missing},
            corpus_documents(corpus_source, progress),
            corpus_source.fingerprint,
        )
        for task in missing:
            found[task.name] = fresh[task.name]
            if cache is not None:
                cache.put(task, keys[task.name], fresh[task.name])
    return {name: value for name, value in found.items() if value is not None}
