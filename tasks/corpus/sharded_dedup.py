"""Deduplication across shards: signatures per shard anywhere, one decision for all.

`find_duplicates` (tasks/corpus/dedup.py) sweeps every document in one process. At
scale the expensive part, hashing every shingle of every document, is split the way
datatrove does it:

1. per shard, on any worker and in any order, `write_shard_signatures` writes one
   parquet file: each document's index, the SHA-256 of its normalised text and its
   MinHash signature, cut into the LSH bands;
2. `find_duplicates_across_shards` reads the files, groups equal band values across all
   shards (one band at a time, so only one band of every document is in memory), and
   decides in ascending index order with the same rule as `find_duplicates`.

That rule is greedy, not clustering: a document is dropped when it matches a *kept*
earlier one. If A~B and B~C but A!~C, A is kept, B dropped (~A), and C kept, because B,
dropped, never counts as a match. So the decision walks the documents in index order,
remembering only kept ones per bucket, exactly as the single-process LSH index does;
the result (dropped documents and their verdicts) is equal to `find_duplicates` on the
same documents, whatever the shards and their order.

Paths are plain local paths (`str` or `os.PathLike`): a file appears by an atomic
rename, which object stores do not offer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.corpus.dedup import (
    Deduplicator,
    DedupSettings,
    estimated_jaccard,
    exact_duplicate_verdict,
    near_duplicate_verdict,
    new_lsh_index,
    normalize_for_hash,
)
from tasks.corpus.records import Verdict

SIGNATURES_SUFFIX = ".dedup.parquet"  # what `shard_signature_files` lists
_SETTINGS_KEY = b"gpt2lab.dedup_settings"  # parquet metadata: the settings that wrote it
# Documents signed, then written, at a time: one parquet row group, the unit in which the
# decision reads whole signatures back. Bounds the memory of both.
_ROWS_PER_BATCH = 4096
_DIGEST_BYTES = 32  # SHA-256


@lru_cache(maxsize=8)
def band_layout(settings: DedupSettings) -> tuple[int, int]:
    """(bands, rows per band) of the single-process LSH index for these settings, e.g.
    (14, 9) for the defaults: candidates are the same only if the bands are."""
    index = new_lsh_index(settings)
    return index.b, index.r


def _schema(settings: DedupSettings) -> pa.Schema:
    """idx, digest, signed, band_00..band_{b-1} and, when b*r < num_perm, `rest`: the
    signature values no band covers, still needed for the Jaccard estimate."""
    bands, rows = band_layout(settings)
    fields = [
        pa.field("idx", pa.int64()),
        pa.field("digest", pa.list_(pa.uint8(), _DIGEST_BYTES)),
        # False for an empty text or with near=False: no signature, never a near candidate.
        pa.field("signed", pa.bool_()),
    ]
    fields += [pa.field(_band_column(band), pa.list_(pa.uint32(), rows)) for band in range(bands)]
    if rest := settings.num_perm - bands * rows:
        fields.append(pa.field("rest", pa.list_(pa.uint32(), rest)))
    return pa.schema(fields, metadata={_SETTINGS_KEY: settings.model_dump_json()})


def _band_column(band: int) -> str:
    return f"band_{band:02d}"


def write_shard_signatures(
    docs: Iterable[tuple[int, str]], path: str | os.PathLike[str], settings: DedupSettings
) -> int:
    """Sign one shard's documents ((index, text) pairs, any order; indexes unique across
    all shards) into one parquet file at `path`; returns how many documents it holds.

    The file is written under a temporary name beside `path` and renamed when complete,
    so `path` is either whole or absent; an interrupted write leaves no file at `path`.
    MinHash values fit 32 bits (datasketch masks them), so they are stored as uint32.
    """
    path = Path(path)
    schema = _schema(settings)
    signer = Deduplicator(settings)  # its `signature` is the single-process one
    bands, rows = band_layout(settings)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            batches = iter(docs)
            while batch := list(islice(batches, _ROWS_PER_BATCH)):
                writer.write_table(_sign_batch(batch, signer, schema, bands, rows))
                written += len(batch)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return written


def _sign_batch(
    batch: list[tuple[int, str]], signer: Deduplicator, schema: pa.Schema, bands: int, rows: int
) -> pa.Table:
    """One batch of documents as a table: the exact hash and signature of each, as
    `Deduplicator.check` computes them."""
    settings = signer.settings
    digests = np.zeros((len(batch), _DIGEST_BYTES), dtype=np.uint8)
    signatures = np.zeros((len(batch), settings.num_perm), dtype=np.uint32)
    signed = np.zeros(len(batch), dtype=bool)
    for row, (_, text) in enumerate(batch):
        normalized = normalize_for_hash(text)
        digest = hashlib.sha256(normalized.encode("utf-8")).digest()
        digests[row] = np.frombuffer(digest, dtype=np.uint8)
        if settings.near and normalized:
            signatures[row] = signer.signature(normalized.split()).hashvalues
            signed[row] = True
    idx = pa.array([idx for idx, _ in batch], pa.int64())
    columns = [idx, _fixed(digests), pa.array(signed)]
    columns += [_fixed(signatures[:, band * rows : (band + 1) * rows]) for band in range(bands)]
    if bands * rows < settings.num_perm:
        columns.append(_fixed(signatures[:, bands * rows :]))
    return pa.Table.from_arrays(columns, schema=schema)


def _fixed(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-D array as a fixed-size-list column, one row per document."""
    matrix = np.ascontiguousarray(matrix)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    """A fixed-size-list column back as a 2-D array (rows x width)."""
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(-1, width)


def shard_signature_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The complete signature files in `directory` (names ending in SIGNATURES_SUFFIX),
    sorted; temporary files of unfinished writes start with "." and end in ".tmp"."""
    return sorted(Path(directory).glob(f"[!.]*{SIGNATURES_SUFFIX}"))


def _open(path: Path, settings: DedupSettings) -> pq.ParquetFile:
    """The signature file at `path`, checked to come from `settings`; a one-line error
    naming the file otherwise."""
    try:
        file = pq.ParquetFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no signature file (never written, or unfinished)"
        ) from None
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a signature file ({error})") from None
    metadata = file.schema_arrow.metadata or {}
    if _SETTINGS_KEY not in metadata:
        raise ValueError(f"{path}: not a signature file (no {_SETTINGS_KEY.decode()} metadata)")
    written = DedupSettings.model_validate_json(metadata[_SETTINGS_KEY])
    if written != settings:
        wanted = settings.model_dump()
        differences = ", ".join(
            f"{name}={value!r} (expected {wanted[name]!r})"
            for name, value in written.model_dump().items()
            if value != wanted[name]
        )
        raise ValueError(f"{path}: signatures written with other dedup settings: {differences}")
    return file


def signature_settings(path: str | os.PathLike[str]) -> DedupSettings | None:
    """The dedup settings a signature file was written with; None if it is not one."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError):
        return None
    if _SETTINGS_KEY not in metadata:
        return None
    return DedupSettings.model_validate_json(metadata[_SETTINGS_KEY])


def find_duplicates_across_shards(
    paths: Sequence[str | os.PathLike[str]], settings: DedupSettings
) -> dict[int, Verdict]:
    """Verdicts for the duplicates among all documents in the signature files `paths`
    (written by `write_shard_signatures` with the same settings; any order): equal to
    `find_duplicates` on the same documents in ascending index order.

    Memory: the index of every document, their 32-byte hashes while exact copies are
    found, one band of every signed document at a time, and whole signatures only for
    the documents that share a band with another.
    """
    files: list[pq.ParquetFile] = []
    try:
        for path in paths:
            files.append(_open(Path(path), settings))
        return _decide(files, [Path(path) for path in paths], settings)
    finally:
        for file in files:
            file.close()


def _decide(
    files: list[pq.ParquetFile], paths: list[Path], settings: DedupSettings
) -> dict[int, Verdict]:
    """Exact copies first, over every document; then near copies among the rest."""
    idx_per_file = [file.read(columns=["idx"]).column(0).to_numpy() for file in files]
    _check_unique(idx_per_file, paths)

    verdicts: dict[int, Verdict] = {}
    exact_copies = np.empty(0, dtype=np.int64)
    if settings.exact:
        verdicts, exact_copies = _exact_duplicates(files, idx_per_file)
    if settings.near:
        # Only signed documents that are not exact copies enter the LSH, as in `check`.
        eligible = [
            file.read(columns=["signed"]).column(0).to_numpy(zero_copy_only=False)
            & ~np.isin(idx, exact_copies, assume_unique=True)
            for file, idx in zip(files, idx_per_file, strict=True)
        ]
        buckets = _shared_buckets(files, idx_per_file, eligible, settings)
        verdicts |= _greedy_near_duplicates(buckets, files, idx_per_file, settings)
    return dict(sorted(verdicts.items()))


def _check_unique(idx_per_file: list[np.ndarray], paths: list[Path]) -> None:
    """Each document index must appear once over all files."""
    every = np.concatenate(idx_per_file) if idx_per_file else np.empty(0, dtype=np.int64)
    values, counts = np.unique(every, return_counts=True)
    if (counts > 1).any():
        idx = values[counts > 1][0]
        where = [str(path) for path, ids in zip(paths, idx_per_file, strict=True) if idx in ids]
        raise ValueError(f"document #{idx} appears more than once, in {', '.join(where)}")


def _exact_duplicates(
    files: list[pq.ParquetFile], idx_per_file: list[np.ndarray]
) -> tuple[dict[int, Verdict], np.ndarray]:
    """Verdicts for exact copies (equal digests: the lowest index is the original) and
    the sorted indexes of those copies."""
    if not files:
        return {}, np.empty(0, dtype=np.int64)
    idx = np.concatenate(idx_per_file)
    digests = np.concatenate(
        [_matrix(file.read(columns=["digest"]).column(0), _DIGEST_BYTES) for file in files]
    )
    order = np.argsort(idx)
    idx, digests = idx[order], digests[order]
    # np.unique sorts stably, so `first` holds each digest's first position in index order.
    _, first, group = np.unique(digests, axis=0, return_index=True, return_inverse=True)
    original = idx[first[group.reshape(-1)]]
    copies = original != idx
    verdicts = {
        int(copy): exact_duplicate_verdict(int(first_idx))
        for copy, first_idx in zip(idx[copies], original[copies], strict=True)
    }
    return verdicts, idx[copies]


def _shared_buckets(
    files: list[pq.ParquetFile],
    idx_per_file: list[np.ndarray],
    eligible: list[np.ndarray],
    settings: DedupSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """(bucket, document index) for every document that shares a band's values with
    another: the LSH candidates. One band is read from every file at a time; buckets
    that hold a single document are dropped at once, so what stays is small."""
    bands, rows = band_layout(settings)
    bucket_parts: list[np.ndarray] = []
    idx_parts: list[np.ndarray] = []
    first_bucket = 0  # bucket numbers run on across bands: a bucket is (band, values)
    for band in range(bands):
        values = [
            _matrix(file.read(columns=[_band_column(band)]).column(0), rows)[mask]
            for file, mask in zip(files, eligible, strict=True)
        ]
        idx = np.concatenate([ids[mask] for ids, mask in zip(idx_per_file, eligible, strict=True)])
        if not len(idx):
            continue
        _, bucket, counts = np.unique(
            np.concatenate(values), axis=0, return_inverse=True, return_counts=True
        )
        bucket = bucket.reshape(-1)
        shared = counts[bucket] > 1
        bucket_parts.append(bucket[shared] + first_bucket)
        idx_parts.append(idx[shared])
        first_bucket += len(counts)
    if not idx_parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(bucket_parts), np.concatenate(idx_parts)


def _greedy_near_duplicates(
    buckets: tuple[np.ndarray, np.ndarray],
    files: list[pq.ParquetFile],
    idx_per_file: list[np.ndarray],
    settings: DedupSettings,
) -> dict[int, Verdict]:
    """Walk the candidates in ascending index order as `Deduplicator.check` does: a
    document's matches are the *kept* earlier documents in its buckets whose estimated
    Jaccard reaches the threshold; the closest wins (ties: the earliest). A kept
    document joins its buckets; a dropped one never does."""
    bucket, idx = buckets
    if not len(idx):
        return {}
    order = np.lexsort((bucket, idx))  # by document, then bucket
    bucket, idx = bucket[order], idx[order]
    documents, starts = np.unique(idx, return_index=True)
    signatures = _signatures_of(documents, files, idx_per_file, settings)
    kept_in: dict[int, list[int]] = {}  # bucket -> kept documents in it, ascending
    verdicts: dict[int, Verdict] = {}
    ends = [*starts[1:], len(idx)]
    for position, (doc, start, end) in enumerate(zip(documents, starts, ends, strict=True)):
        doc_buckets = bucket[start:end].tolist()
        candidates = sorted({other for b in doc_buckets for other in kept_in.get(b, ())})
        best: tuple[int, float] | None = None
        for other in candidates:
            other_signature = signatures[np.searchsorted(documents, other)]
            similarity = estimated_jaccard(other_signature, signatures[position])
            if similarity >= settings.threshold and (best is None or similarity > best[1]):
                best = (other, similarity)
        if best is not None:
            verdicts[int(doc)] = near_duplicate_verdict(*best)
        else:
            for b in doc_buckets:
                kept_in.setdefault(b, []).append(int(doc))
    return verdicts


def _signatures_of(
    documents: np.ndarray,
    files: list[pq.ParquetFile],
    idx_per_file: list[np.ndarray],
    settings: DedupSettings,
) -> np.ndarray:
    """The whole signatures of `documents` (sorted indexes), one row each, in that order;
    read one row group at a time, and only the row groups that hold some of them."""
    signatures = np.zeros((len(documents), settings.num_perm), dtype=np.uint32)
    bands, rows = band_layout(settings)
    names = [_band_column(band) for band in range(bands)]
    names += ["rest"] if bands * rows < settings.num_perm else []
    for file, ids in zip(files, idx_per_file, strict=True):
        wanted = np.isin(ids, documents)
        start = 0
        for group in range(file.num_row_groups):
            end = start + file.metadata.row_group(group).num_rows
            if (mine := wanted[start:end]).any():
                table = file.read_row_group(group, columns=names)
                parts = [
                    _matrix(table.column(name), table.schema.field(name).type.list_size)[mine]
                    for name in names
                ]
                signatures[np.searchsorted(documents, ids[start:end][mine])] = np.hstack(parts)
            start = end
    return signatures
