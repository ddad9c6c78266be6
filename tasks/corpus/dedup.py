"""Deduplication: keep the first copy of every document, drop the rest, and say which copy.

The same article reaches Reddit many times: reposts, mirrors, syndicated copies with
other headers, pages that differ by a date or a share counter. Training on copies wastes
compute and makes a model memorise (Lee et al. 2022, "Deduplicating Training Data Makes
Language Models Better"). Two passes, both in one linear sweep over the documents:

* exact: a SHA-256 of the normalised text (lower case, no punctuation, single spaces),
  so copies that differ only in case, quotes or whitespace count as the same;
* near: MinHash signatures of word 5-gram "shingles", indexed with locality-sensitive
  hashing (LSH), so each document is compared only with the few earlier documents
  whose signatures share a band, never with all of them.

Documents are visited in index order; the first of a group is kept, so the result
depends only on the order, never on timing or on how many workers produced the input.
"""

from __future__ import annotations

import gc
import hashlib
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import numpy as np
import regex
from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel, ConfigDict, Field

from tasks.corpus.records import Verdict

STAGE = "dedup"

# LSH weighs missed duplicates (false negatives) 9x more than false candidates: every
# candidate is checked against the threshold with its signature anyway, so a false
# candidate costs one array comparison, while a miss leaves a copy in the corpus. With
# 128 permutations and threshold 0.8 this gives 14 bands of 9 rows: a pair at Jaccard
# 0.85 becomes a candidate 97% of the time (50/50 weights: 69%).
_LSH_WEIGHTS = (0.1, 0.9)
_SHINGLE_BATCH = 4096  # shingles hashed at a time: bounds memory on very long documents


class DedupSettings(BaseModel):
    """Exact and near-duplicate detection.

    Why `threshold` = 0.8 (estimated Jaccard similarity of the two documents' sets of word
    5-grams): it is the value of Lee et al. 2022 (5-grams, MinHash), close to RefinedWeb's
    and FineWeb's (0.75-0.8) and Gopher's 0.8 (on 13-grams). An edited word breaks the 5
    shingles that hold it, so a copy with 1% of its words edited scores about 0.90, 2%
    about 0.82, 5% about 0.63; a copy with a tenth of the text (header, footer, share
    box) different scores about 0.8: reposts and syndicated copies are caught, rewrites
    are not. Two
    different articles on the same topic share almost no 5-grams (Jaccard < 0.1). The
    Pile's OpenWebText2 used 0.5, which also drops pages that quote half of another;
    lower it for a more aggressive cut.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    exact: bool = Field(default=True, description="Drop copies with equal normalised text.")
    near: bool = Field(default=True, description="Drop near-duplicates (MinHash LSH).")
    threshold: float = Field(default=0.8, gt=0, lt=1, description="Jaccard of 5-gram sets.")
    num_perm: int = Field(
        default=128,
        ge=16,
        description="MinHash permutations. 128: Jaccard estimates within about +-0.035 at "
        "0.8, 512 bytes per kept document; more costs time linearly.",
    )
    shingle_size: int = Field(default=5, ge=1, description="Words per shingle.")
    seed: int = Field(default=1, description="Fixes the permutations: same input, same output.")


_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")


def normalize_for_hash(text: str) -> str:
    """The text as compared for duplicates: Unicode-normalised (NFKC: full-width letters,
    ligatures), lower case, punctuation and symbols turned into spaces, whitespace runs
    into single spaces. "Hello,  World!" and "hello world" normalise alike."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def content_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised text: equal for exact duplicates."""
    return hashlib.sha256(normalize_for_hash(text).encode("utf-8")).hexdigest()


def _shingles(words: list[str], size: int) -> Iterator[bytes]:
    """Every run of `size` consecutive words, as UTF-8 bytes; a shorter text is one shingle.

    Built lazily with `zip` and `map` over the encoded words: C loops, no Python function
    call per shingle, which would otherwise be the slowest part of deduplication."""
    encoded = [word.encode("utf-8") for word in words]
    if len(encoded) <= size:
        return iter([b" ".join(encoded)])
    return map(b" ".join, zip(*(encoded[i:] for i in range(size)), strict=False))


def new_lsh_index(settings: DedupSettings) -> MinHashLSH:
    """An empty LSH index for these settings. Its band layout (`.b` bands of `.r` rows)
    is datasketch's own choice for the threshold, permutations and `_LSH_WEIGHTS`; the
    sharded dedup (tasks/corpus/sharded_dedup.py) buckets on the same bands."""
    return MinHashLSH(
        threshold=settings.threshold, num_perm=settings.num_perm, weights=_LSH_WEIGHTS
    )


def estimated_jaccard(signature: np.ndarray, other: np.ndarray) -> float:
    """The share of equal values in two MinHash signatures: an unbiased estimate of the
    Jaccard similarity of the two shingle sets."""
    return float(np.mean(signature == other))


def exact_duplicate_verdict(first: int) -> Verdict:
    """The verdict of a document whose normalised text equals that of document `first`."""
    return Verdict(STAGE, "exact_duplicate", f"same as #{first}")


def near_duplicate_verdict(other: int, similarity: float) -> Verdict:
    """The verdict of a near copy of kept document `other` (estimated Jaccard)."""
    return Verdict(STAGE, "near_duplicate", f"~#{other} (Jaccard≈{similarity:.2f})")


class Deduplicator:
    """Streaming duplicate detector: call `check` with documents in ascending index order.

    Memory per kept document is fixed: a 32-byte hash, a `num_perm`-value signature and
    its LSH band keys, whatever the document's length.
    """

    def __init__(self, settings: DedupSettings | None = None) -> None:
        self.settings = settings or DedupSettings()
        self._first_by_hash: dict[bytes, int] = {}  # SHA-256 digest -> first index
        self._signatures: dict[int, np.ndarray] = {}
        self._lsh = new_lsh_index(self.settings)
        # One template MinHash; each document gets a copy, which shares its permutations
        # instead of drawing them again. crc32 hashes the shingles: datasketch mixes every
        # input hash (MurmurHash3's finaliser) before permuting, so a fast 32-bit hash is
        # as good here as its default SHA-1, which takes most of the time.
        self._template = MinHash(
            num_perm=self.settings.num_perm, seed=self.settings.seed, hashfunc=zlib.crc32
        )
        self._last_idx: int | None = None
        self.counts: Counter[str] = Counter()  # "kept", "exact_duplicate", "near_duplicate"

    def signature(self, words: list[str]) -> MinHash:
        """The MinHash of a document's shingles, hashed in bounded batches."""
        minhash = self._template.copy()
        shingles = _shingles(words, self.settings.shingle_size)
        while batch := list(islice(shingles, _SHINGLE_BATCH)):
            minhash.update_batch(batch)
        return minhash

    def check(self, idx: int, text: str) -> Verdict | None:
        """None if `text` is the first of its kind (it is then remembered), else a Verdict
        naming the earlier document it copies."""
        if self._last_idx is not None and idx <= self._last_idx:
            raise ValueError(
                f"documents must come in ascending index order: {idx} after {self._last_idx}"
            )
        self._last_idx = idx
        normalized = normalize_for_hash(text)

        if self.settings.exact:
            digest = hashlib.sha256(normalized.encode("utf-8")).digest()  # 32 bytes, not 64 hex
            if (first := self._first_by_hash.get(digest)) is not None:
                self.counts["exact_duplicate"] += 1
                return exact_duplicate_verdict(first)
            self._first_by_hash[digest] = idx

        if self.settings.near and normalized:
            minhash = self.signature(normalized.split())
            match = self._closest_earlier(minhash)
            if match is not None:
                other, similarity = match
                self.counts["near_duplicate"] += 1
                return near_duplicate_verdict(other, similarity)
            self._lsh.insert(idx, minhash, check_duplication=False)
            self._signatures[idx] = minhash.hashvalues

        self.counts["kept"] += 1
        return None

    def _closest_earlier(self, minhash: MinHash) -> tuple[int, float] | None:
        """The kept document most similar to this one, if at or above the threshold.

        LSH candidates are only "probably similar": each is confirmed with the estimated
        Jaccard (the share of equal signature values). Ties go to the earliest document.
        """
        best: tuple[int, float] | None = None
        for candidate in sorted(self._lsh.query(minhash)):
            similarity = estimated_jaccard(self._signatures[candidate], minhash.hashvalues)
            if similarity >= self.settings.threshold and (best is None or similarity > best[1]):
                best = (candidate, similarity)
        return best


def find_duplicates(
    docs: Iterable[tuple[int, str]], settings: DedupSettings | None = None
) -> dict[int, Verdict]:
    """Verdicts for the duplicates among `docs` ((index, text) pairs, ascending index).

    The first occurrence is kept: a later exact copy gets Verdict("dedup",
    "exact_duplicate", "same as #i"), a near copy Verdict("dedup", "near_duplicate",
    "~#i (Jaccard≈0.91)"). Kept documents are absent from the result. Time is linear in
    the number of documents; memory is a fixed amount per kept document.
    """
    deduplicator = Deduplicator(settings)
    verdicts: dict[int, Verdict] = {}
    with _cycle_collector_paused():
        for idx, text in docs:
            if (verdict := deduplicator.check(idx, text)) is not None:
                verdicts[idx] = verdict
    return verdicts


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for the sweep. The LSH index holds many small sets
    (one per band per document), and every full collection would rescan all of them:
    time spent that grows with the index, for nothing, as the sweep creates no
    reference cycles. Reference counting still frees memory as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
