"""Where the encode flow reads documents from: a corpus folder, or any saved dataset.

Accepted inputs:
- a folder written by the `corpus` flow (corpus.json + dataset/): its recorded corpus
  fingerprint is used for lineage;
- a Hugging Face dataset saved with `save_to_disk` that has a text column (for example a
  corpus made elsewhere): its fingerprint is the SHA-256 of its files.

Everything a bad input can get wrong is checked here, before anything is written: the
folder, the column and its type, no documents at all, a missing (null) text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The layout of a folder the corpus flow writes: corpus.json beside the dataset/ folder.
from tasks.corpus.export import CORPUS_FILE, DATASET_DIR
from tasks.encode.token_shards import TokenShardsError
from tasks.fingerprint import fingerprint_folder

TEXT_COLUMN = "text"
# Rows read at a time when scanning or encoding: a few MB of text for web pages.
READ_ROWS = 1_000


class CorpusSourceError(TokenShardsError):
    """A corpus that cannot be encoded; the message names the folder, row and column."""


@dataclass(frozen=True)
class CorpusSource:
    """A dataset on disk with a text column, and its fingerprint."""

    path: Path  # what the user named
    dataset_path: Path
    fingerprint: str
    documents: int
    column: str = TEXT_COLUMN

    def open(self) -> datasets.Dataset:
        """The dataset, memory-mapped. Open it per piece of work and let it go afterwards:
        the mapped pages it has read count towards the process's memory until then."""
        return datasets.load_from_disk(str(self.dataset_path))


def open_corpus(path: str | Path, column: str = TEXT_COLUMN) -> CorpusSource:
    """Check `path` and describe it; CorpusSourceError with a one-line reason if unusable."""
    path = Path(path)
    if not path.exists():
        raise CorpusSourceError(f"corpus {path}: no such folder")
    summary = path / CORPUS_FILE
    if summary.is_file():
        dataset_path = path / DATASET_DIR
        fingerprint = _recorded_fingerprint(summary)
    else:
        dataset_path, fingerprint = path, None
    dataset = _load(dataset_path, path)
    _check_column(dataset, column, dataset_path)
    if len(dataset) == 0:
        raise CorpusSourceError(f"corpus {path}: the dataset has no documents; nothing to encode")
    return CorpusSource(
        path=path,
        dataset_path=dataset_path,
        fingerprint=fingerprint or fingerprint_folder(dataset_path),
        documents=len(dataset),
        column=column,
    )


def _recorded_fingerprint(summary: Path) -> str:
    try:
        fingerprint = json.loads(summary.read_text(encoding="utf-8"))["fingerprint"]
    except (ValueError, KeyError, TypeError):
        raise CorpusSourceError(f"{summary}: not a corpus summary with a 'fingerprint'") from None
    if not isinstance(fingerprint, str) or not fingerprint:
        raise CorpusSourceError(f"{summary}: field fingerprint: expected a non-empty string")
    return fingerprint


def _load(dataset_path: Path, named: Path) -> datasets.Dataset:
    try:
        dataset = datasets.load_from_disk(str(dataset_path))
    except FileNotFoundError:
        raise CorpusSourceError(
            f"corpus {named}: neither a corpus folder ({CORPUS_FILE} + {DATASET_DIR}/) nor a "
            "dataset saved with `save_to_disk`"
        ) from None
    except Exception as error:  # datasets fails in many ways on what it cannot read
        if _saved_without_data(dataset_path):  # `datasets` cannot load its own empty saves
            raise CorpusSourceError(
                f"corpus {named}: the dataset has no documents; nothing to encode"
            ) from None
        raise CorpusSourceError(
            f"corpus {named}: the dataset cannot be read ({type(error).__name__}: {error})"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(dataset)
        raise CorpusSourceError(
            f"corpus {named}: holds several splits ({splits}); give the folder of one, "
            f"e.g. {named / next(iter(dataset))}"
        )
    return dataset


def _saved_without_data(dataset_path: Path) -> bool:
    try:
        state = json.loads((dataset_path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return state.get("_data_files") == []


def _check_column(dataset: datasets.Dataset, column: str, where: Path) -> None:
    if column not in dataset.column_names:
        found = ", ".join(dataset.column_names) or "none"
        raise CorpusSourceError(f"corpus {where}: no column {column!r} (columns: {found})")
    feature = dataset.features[column]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise CorpusSourceError(
            f"corpus {where}: column {column!r} holds {feature}, not text; every document "
            "must be a string"
        )


# ---------------------------------------------------------------------------------------
# Reading


def iter_text_tables(
    source: CorpusSource, dataset: datasets.Dataset, start: int, end: int, rows: int = READ_ROWS
) -> Iterator[tuple[int, pa.ChunkedArray]]:
    """(first row, Arrow array of texts) for rows start..end-1 of `dataset` (opened from
    `source`), `rows` at a time: nothing is copied until a caller converts them. A missing
    text (null) is a CorpusSourceError naming its row: it would otherwise become an empty
    document, silently."""
    table = dataset.with_format("arrow")
    for first in range(start, end, rows):
        texts = table[first : min(first + rows, end)][source.column]
        if texts.null_count:  # read from the validity bitmap: the text is not touched
            row = first + int(pc.index(pc.is_null(texts), True).as_py())
            raise CorpusSourceError(
                f"corpus {source.path}: row {row}: column {source.column!r} is null, not text"
            )
        yield first, texts


def text_bytes(texts: pa.ChunkedArray) -> np.ndarray:
    """UTF-8 length of each text, read by Arrow from the string offsets alone: neither a
    Python string is made nor a page of the text itself is read (so the planning scan
    does not pull the whole corpus into memory)."""
    return pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)


def plan_parts(source: CorpusSource, part_bytes: int) -> list[tuple[int, int]]:
    """Cut the documents into runs of consecutive rows of about `part_bytes` of text
    each: (first row, end row) pairs. A part ends at the first document boundary at or
    after `part_bytes`, so a document is never split. Depends only on the data and
    `part_bytes`: the same corpus gives the same parts, whatever the machine.

    This scan also finds any null text before a single token is written.
    """
    dataset = source.open()
    parts, part_start, filled = [], 0, 0
    for first, texts in iter_text_tables(source, dataset, 0, source.documents):
        for offset, size in enumerate(text_bytes(texts).tolist()):
            filled += size
            if filled >= part_bytes:
                end = first + offset + 1
                parts.append((part_start, end))
                part_start, filled = end, 0
    if part_start < source.documents:
        parts.append((part_start, source.documents))
    return parts
