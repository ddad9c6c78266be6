"""The token-shard format: what the encode flow writes and training reads.

A tokens folder holds, for each split ("train", "val"), flat binary files of token ids,
one after another with no header, in the machine-independent little-endian byte order:

    tokens/
      tokens.json          metadata; written last: its presence says the folder is complete
      train-000000.bin     uint16 (or uint32) ids: doc, <|endoftext|>, doc, <|endoftext|>, ...
      train-000001.bin
      val-000000.bin
      parts/000000.json    what one part of the corpus became (for resuming)
      plan.json            what this folder is being made from (for resuming)
      tokenizer/           the tokenizer used, in GPT-2's file layout

Flat files of fixed-width integers are what nanoGPT and most GPT-2 training code read:
`numpy.memmap` maps them without loading them, so a training process can sample from a
corpus larger than its memory. GPT-2's vocabulary (50,257) fits in uint16 (up to
65,535), which halves the disk and page-cache cost against uint32.

See docs/encode.md for the whole format.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from model.errors import Gpt2labError

FORMAT = "gpt2lab.tokens"
VERSION = 1
META_FILE = "tokens.json"
PLAN_FILE = "plan.json"
PARTS_DIR = "parts"
TOKENIZER_DIR = "tokenizer"
SPLITS = ("train", "val")

Split = Literal["train", "val"]
DtypeName = Literal["uint16", "uint32"]
DtypeChoice = Literal["auto", "uint16", "uint32"]


class TokenShardsError(Gpt2labError):
    """A tokens folder, or a request for one, that cannot be used."""


# ---------------------------------------------------------------------------------------
# Choosing the integer width


def choose_dtype(n_vocab: int, requested: DtypeChoice = "auto") -> DtypeName:
    """The narrowest unsigned type holding every id of a vocabulary of `n_vocab` tokens,
    or the requested one if it can hold them (TokenShardsError if it cannot)."""
    largest_id = n_vocab - 1
    if requested == "auto":
        return "uint16" if largest_id <= np.iinfo(np.uint16).max else "uint32"
    if largest_id > np.iinfo(np.dtype(requested)).max:
        raise TokenShardsError(
            f"dtype {requested} cannot hold token ids up to {largest_id} (a vocabulary of "
            f"{n_vocab:,}); use dtype 'auto' or 'uint32'"
        )
    return requested


def numpy_dtype(name: DtypeName) -> np.dtype:
    """Little-endian on every machine, so shards move between machines unchanged."""
    return np.dtype(name).newbyteorder("<")


def shard_name(split: Split, part: int) -> str:
    return f"{split}-{part:06d}.bin"


# ---------------------------------------------------------------------------------------
# Records


class ShardInfo(BaseModel):
    """One shard file: which split, how many tokens and documents, and its SHA-256."""

    model_config = ConfigDict(frozen=True)

    split: Split
    file: str
    part: int
    tokens: int
    documents: int
    text_bytes: int  # UTF-8 bytes of the documents' text (for bytes per token)
    sha256: str


class PartRecord(BaseModel):
    """What one part (a run of consecutive documents) of the corpus became."""

    part: int
    first_document: int
    end_document: int  # exclusive
    shards: list[ShardInfo]  # 0, 1 or 2: a split with no document has no file
    seconds: float  # time spent encoding and writing it (for throughput)


class TokenShardsMeta(BaseModel):
    """tokens.json: everything a reader needs, and the lineage of the tokens."""

    format: Literal["gpt2lab.tokens"] = FORMAT
    version: int = VERSION
    dtype: DtypeName
    byte_order: Literal["little"] = "little"
    vocab_size: int
    eot_token: int
    tokenizer: dict[str, str]  # name, fingerprint, source ("path or hub id" | "trained")
    corpus: dict[str, str]  # path, fingerprint
    split: dict[str, str | float]  # val_fraction and how documents are assigned
    documents: dict[str, int]  # per split
    tokens: dict[str, int]  # per split, <|endoftext|> included
    text_bytes: dict[str, int]  # per split
    shards: list[ShardInfo]
    fingerprint: str  # of the tokens themselves; see `tokens_fingerprint`

    def shards_of(self, split: Split) -> list[ShardInfo]:
        return [shard for shard in self.shards if shard.split == split]


def tokens_fingerprint(dtype: str, tokenizer_fingerprint: str, shards: Iterable[ShardInfo]) -> str:
    """SHA-256 over the dtype, the tokenizer and every shard's split, size and SHA-256, in
    order: equal exactly when the token files hold the same ids for the same tokenizer.
    Paths and times are left out, so the same corpus and config give the same fingerprint
    anywhere."""
    lines = [f"{FORMAT} v{VERSION} {dtype} {tokenizer_fingerprint}"]
    lines += [f"{s.split} {s.part} {s.tokens} {s.documents} {s.sha256}" for s in shards]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ---------------------------------------------------------------------------------------
# Writing


class ShardWriter:
    """Streams token arrays into one shard file, hashing as it goes; nothing appears under
    the final name until `commit`, so an interrupted shard leaves no file behind.

        with ShardWriter(folder / "train-000000.bin", "uint16") as writer:
            writer.write(ids)  # any number of times
            info = writer.commit(split="train", part=0, documents=..., text_bytes=...)
    """

    def __init__(self, path: Path, dtype: DtypeName) -> None:
        self.path = path
        self.dtype = numpy_dtype(dtype)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self._tmp = Path(tmp)
        self._handle = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.tokens = 0
        self._committed = False

    def write(self, ids: np.ndarray) -> None:
        data = np.ascontiguousarray(ids, dtype=self.dtype)
        buffer = memoryview(data).cast("B")
        self._digest.update(buffer)
        self._handle.write(buffer)
        self.tokens += len(data)

    def commit(self, *, split: Split, part: int, documents: int, text_bytes: int) -> ShardInfo:
        """Flush to disk and rename into place; returns the shard's record."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)
        self._committed = True
        return ShardInfo(
            split=split,
            file=self.path.name,
            part=part,
            tokens=self.tokens,
            documents=documents,
            text_bytes=text_bytes,
            sha256=self._digest.hexdigest(),
        )

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._committed:
            return
        # Not committed (an error, or a full disk): drop the partial file. Closing flushes
        # what is buffered, which fails again on a full disk; the file goes all the same.
        try:
            self._handle.close()
        except OSError:
            pass
        finally:
            self._tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Reading


def read_meta(folder: str | os.PathLike[str]) -> TokenShardsMeta:
    """The metadata of a finished tokens folder, or TokenShardsError saying what is wrong."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise TokenShardsError(
            f"{folder} is not a finished tokens folder: {META_FILE} is missing "
            "(run `gpt2lab encode`, or let an interrupted run finish)"
        )
    try:
        return TokenShardsMeta.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise TokenShardsError(f"{path}: field {where}: {first['msg']}") from None


def open_shards(folder: str | os.PathLike[str], split: Split) -> list[np.memmap]:
    """The split's shards, memory-mapped read-only (nothing is loaded until it is read).

    Each file's size is checked against the metadata, so a truncated or swapped file is
    reported here rather than read as wrong tokens.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    dtype = numpy_dtype(meta.dtype)
    arrays = []
    for shard in meta.shards_of(split):
        path = folder / shard.file
        expected = shard.tokens * dtype.itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != expected:
            found = "missing" if size is None else f"{size:,} bytes"
            raise TokenShardsError(
                f"{path}: expected {expected:,} bytes ({shard.tokens:,} tokens), found {found}"
            )
        arrays.append(np.memmap(path, dtype=dtype, mode="r"))
    return arrays


def verify_shards(folder: str | os.PathLike[str]) -> None:
    """Re-hash every shard and compare with tokens.json (TokenShardsError on a mismatch)."""
    folder = Path(folder)
    for shard in read_meta(folder).shards:
        digest = hashlib.sha256()
        with (folder / shard.file).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != shard.sha256:
            raise TokenShardsError(f"{folder / shard.file}: contents differ from {META_FILE}")


def write_json_atomically(path: Path, model: BaseModel | dict) -> None:
    """Pretty JSON, via a temporary file and a rename (see model.atomic_files)."""
    from model.atomic_files import write_file_atomically

    data = model.model_dump(mode="json") if isinstance(model, BaseModel) else model
    write_file_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
