"""Encoding a corpus into token shards: plan, tokenizer, parts, metadata.

    start_encoding -> the corpus cut into parts of about `shard_mb` of text each, and the
                      tokenizer: GPT-2's (or another, from a folder or the hub) or a new
                      BPE trained on the corpus; a copy goes into the tokens folder
    encode_part    -> one part's documents -> train and val shard files (run per part)
    finish         -> tokens.json, with the counts and the tokens' fingerprint

Each document is encoded and followed by <|endoftext|>, GPT-2's document separator, and
goes to "val" or "train" by a hash of its text (see `ValidationSplit`). Parts are
encoded one after another, each on several threads, and written as soon as they are
done: memory holds a few batches of documents, never the corpus; an interrupted run
starts again at the first unfinished part.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from model.atomic_files import write_folder_atomically
from model.tokenizer import Tokenizer, load_tokenizer, train_bpe
from tasks.encode.corpus_source import CorpusSource, iter_text_tables, plan_parts
from tasks.encode.token_shards import (
    META_FILE,
    PARTS_DIR,
    PLAN_FILE,
    SPLITS,
    TOKENIZER_DIR,
    DtypeChoice,
    DtypeName,
    PartRecord,
    ShardWriter,
    TokenShardsError,
    TokenShardsMeta,
    choose_dtype,
    numpy_dtype,
    shard_name,
    tokens_fingerprint,
    write_json_atomically,
)

MB = 1_000_000


class EncodeSettings(BaseModel):
    """How to encode (the tokenizer is chosen separately, see `TokenizerChoice`)."""

    val_fraction: float = Field(
        0.005,
        ge=0,
        lt=1,
        description="Share of documents held out for validation, chosen by a hash of the "
        "text. nanoGPT holds out 0.05% of OpenWebText's 8M documents (about 4,000); the "
        "smaller corpora built here need a larger share for a steady validation loss.",
    )
    dtype: DtypeChoice = Field(
        "auto", description="Token id width: auto = uint16 when the vocabulary fits."
    )
    shard_mb: float = Field(
        64,
        gt=0,
        description="MB of text per part; each part gives one shard per split (64 MB of "
        "web text is about 15M GPT-2 tokens, a 30 MB uint16 file).",
    )
    threads: int = Field(0, ge=0, description="Encoding threads; 0 = one per CPU core.")
    batch_documents: int = Field(256, ge=1, description="Documents handed to a thread at a time.")

    @property
    def part_bytes(self) -> int:
        return max(1, round(self.shard_mb * MB))

    def thread_count(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))


class TokenizerChoice(BaseModel):
    """Which tokenizer: an existing one (folder or hub id), or a new BPE of `vocab_size`
    tokens learnt from the corpus's training documents."""

    tokenizer: str = Field("gpt2", description="Tokenizer folder or hub id (when not training).")
    train_tokenizer: bool = False
    vocab_size: int | None = Field(
        None, ge=257, description="Vocabulary of the BPE to train (256 bytes + merges + EOT)."
    )
    train_mb: float = Field(
        200,
        gt=0,
        description="At most this many MB of training documents are read to learn the BPE: "
        "merges settle long before a large corpus is exhausted.",
    )

    def label(self) -> str:
        """How the plan records the choice: the path or hub id, or "trained:V"."""
        return f"trained:{self.vocab_size}" if self.train_tokenizer else self.tokenizer


# ---------------------------------------------------------------------------------------
# Train / validation split


@dataclass(frozen=True)
class ValidationSplit:
    """A document goes to "val" when the first 8 bytes of the BLAKE2b hash of its UTF-8
    text, read as a number in [0, 1), are below `fraction`.

    Deterministic (the same document always lands on the same side, whatever the order,
    the machine or the number of threads) and independent of position, so adding
    documents to a corpus does not move the others. Identical documents share a side, so
    an exact duplicate can never leak from training into validation.
    """

    fraction: float
    threshold: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", int(self.fraction * 2**64))

    def is_validation(self, utf8: bytes) -> bool:
        digest = hashlib.blake2b(utf8, digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.threshold


# ---------------------------------------------------------------------------------------
# One batch of documents (runs on a worker thread)


@dataclass
class EncodedBatch:
    """The tokens of a batch of documents, each followed by <|endoftext|>, by split."""

    ids: dict[str, np.ndarray]
    documents: dict[str, int]
    text_bytes: dict[str, int]


def encode_documents(
    tokenizer: Tokenizer, texts: list[str], split: ValidationSplit, dtype: DtypeName
) -> EncodedBatch:
    """Encode `texts` in order, each followed by the end-of-text token, sorted into splits.

    "<|endoftext|>" written inside a document is encoded as plain text: a web page must not
    be able to forge a document boundary.
    """
    eot = np.array([tokenizer.eot_token], dtype=np.uint32)
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    documents = dict.fromkeys(SPLITS, 0)
    text_bytes = dict.fromkeys(SPLITS, 0)
    for text in texts:
        utf8 = text.encode("utf-8")
        name = "val" if split.is_validation(utf8) else "train"
        pieces[name] += (tokenizer.encode_to_array(text), eot)
        documents[name] += 1
        text_bytes[name] += len(utf8)
    target = numpy_dtype(dtype)
    ids = {
        name: np.concatenate(parts).astype(target) if parts else np.empty(0, target)
        for name, parts in pieces.items()
    }
    return EncodedBatch(ids, documents, text_bytes)


# ---------------------------------------------------------------------------------------
# The plan: what a tokens folder is made from


class EncodePlan(BaseModel):
    """plan.json: the inputs and settings that decide a tokens folder's bytes. A rerun
    into the same folder must have the same plan; it then skips the finished parts."""

    corpus_path: str
    corpus_fingerprint: str
    tokenizer_choice: str  # TokenizerChoice.label()
    tokenizer_name: str | None = None
    tokenizer_fingerprint: str | None = None  # known once the tokenizer is ready
    vocab_size: int
    eot_token: int | None = None
    dtype: DtypeName
    val_fraction: float
    part_bytes: int
    parts: list[tuple[int, int]]  # (first document, end document) per part

    def conflicts_with(self, other: EncodePlan) -> list[str]:
        """Fields on which the two plans disagree (unknown values agree with anything)."""
        found = []
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name in _MAY_CHANGE or mine is None or theirs is None:
                continue
            if mine != theirs:
                found.append(name)
        return found


# Where the corpus lies may change between runs; what it holds may not.
_MAY_CHANGE = frozenset({"corpus_path"})


# Training measures its validation loss on held-out documents; a split expected to hold
# fewer than this many is refused before any work (with fewer, the split is often empty,
# and one document gives a loss that jumps with whichever it is).
MIN_EXPECTED_VALIDATION_DOCUMENTS = 2


def validation_share_problem(documents: int, val_fraction: float, where: object) -> str | None:
    """Why `val_fraction` of `documents` makes no usable validation split, or None."""
    expected = documents * val_fraction
    if expected >= MIN_EXPECTED_VALIDATION_DOCUMENTS:
        return None
    wanted = MIN_EXPECTED_VALIDATION_DOCUMENTS / documents
    advice = (
        f"give --val-fraction {math.ceil(wanted * 100) / 100:g} or more"
        if wanted <= 0.5
        else f"build a corpus of at least {2 * MIN_EXPECTED_VALIDATION_DOCUMENTS} documents"
    )
    return (
        f"{where}: {documents} documents x val_fraction {val_fraction:g} leaves "
        f"{expected:.2g} expected for validation, and training needs at least "
        f"{MIN_EXPECTED_VALIDATION_DOCUMENTS}: {advice}"
    )


def plan_encoding(
    source: CorpusSource, choice: TokenizerChoice, settings: EncodeSettings, vocab_size: int
) -> EncodePlan:
    """The plan before the tokenizer exists (its fingerprint is filled in later). A share
    held out for validation that is too small for this corpus is refused here, first."""
    if problem := validation_share_problem(
        source.documents, settings.val_fraction, f"corpus {source.path}"
    ):
        raise TokenShardsError(problem)
    return EncodePlan(
        corpus_path=str(source.path),
        corpus_fingerprint=source.fingerprint,
        tokenizer_choice=choice.label(),
        vocab_size=vocab_size,
        dtype=choose_dtype(vocab_size, settings.dtype),
        val_fraction=settings.val_fraction,
        part_bytes=settings.part_bytes,
        parts=plan_parts(source, settings.part_bytes),
    )


def check_folder(out: Path, plan: EncodePlan) -> None:
    """Refuse to mix: `out` must be new, empty, or made by this same plan."""
    path = out / PLAN_FILE
    if path.is_file():
        try:
            existing = EncodePlan.model_validate_json(path.read_bytes())
        except ValidationError:
            raise TokenShardsError(f"{path}: not a gpt2lab encode plan; delete it") from None
        if conflicts := existing.conflicts_with(plan):
            name = conflicts[0]
            was, now = getattr(existing, name), getattr(plan, name)
            raise TokenShardsError(
                f"{out} holds tokens made with another {name} ({_show(was)}, now "
                f"{_show(now)}); choose another output folder or delete this one"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise TokenShardsError(
            f"{out} is not empty and holds no {PLAN_FILE}: not a tokens folder of ours; "
            "choose an empty or new output folder"
        )


def _show(value: object) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:12] + "…"


def record_plan(out: Path, plan: EncodePlan) -> None:
    """Check `out` against `plan`, then record the plan there (the first thing written:
    it marks the folder as a tokens folder of ours)."""
    check_folder(out, plan)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomically(out / PLAN_FILE, plan)


# ---------------------------------------------------------------------------------------
# The tokenizer


def keep_tokenizer_copy(tokenizer: Tokenizer, out: Path) -> Tokenizer:
    """Save `tokenizer` in `out/tokenizer` (GPT-2's layout): training then reads the tokens
    and the tokenizer that made them from one folder."""
    write_folder_atomically(out / TOKENIZER_DIR, tokenizer.save)
    _loaded_tokenizers.clear()
    _loaded_tokenizers[_tokenizer_key(out)] = tokenizer  # the copy holds the same files
    return tokenizer


def train_tokenizer(
    source: CorpusSource, choice: TokenizerChoice, out: Path, val_fraction: float
) -> Tokenizer:
    """Learn a BPE of `choice.vocab_size` tokens from the training documents (validation
    text stays unseen) into `out/tokenizer`; an interrupted run reuses a finished one."""
    folder = out / TOKENIZER_DIR
    if not (folder / "encoder.json").is_file():
        assert choice.vocab_size is not None  # checked by `start_encoding`
        texts = training_texts(source, ValidationSplit(val_fraction), round(choice.train_mb * MB))
        # Into a temporary folder, renamed when complete: a kill never leaves half of one.
        write_folder_atomically(folder, lambda tmp: train_bpe(texts, choice.vocab_size, tmp))
    return load_tokenizer(folder)


def training_texts(source: CorpusSource, split: ValidationSplit, limit: int) -> Iterator[str]:
    """The training split's documents, in order, until `limit` bytes of text."""
    dataset = source.open()
    read = 0
    for _, texts in iter_text_tables(source, dataset, 0, source.documents):
        for text in texts.to_pylist():
            utf8 = text.encode("utf-8")
            if split.is_validation(utf8):
                continue
            yield text
            read += len(utf8)
            if read >= limit:
                return


# Tokenizers already loaded, by folder and the version of its files. Each part's task asks
# for the tokenizer; loading GPT-2's takes about a third of a second.
_loaded_tokenizers: dict[tuple[str, int, int], Tokenizer] = {}


def _tokenizer_key(out: Path) -> tuple[str, int, int]:
    stat = (out / TOKENIZER_DIR / "encoder.json").stat()
    return str(out / TOKENIZER_DIR), stat.st_mtime_ns, stat.st_size


def tokenizer_in(out: Path) -> Tokenizer:
    """The tokenizer saved in a tokens folder (loaded once per process and file version)."""
    key = _tokenizer_key(out)
    if key not in _loaded_tokenizers:
        _loaded_tokenizers.clear()  # one at a time is all a run needs
        _loaded_tokenizers[key] = load_tokenizer(out / TOKENIZER_DIR)
    return _loaded_tokenizers[key]


# ---------------------------------------------------------------------------------------
# Parts


def part_record_path(out: Path, index: int) -> Path:
    return out / PARTS_DIR / f"{index:06d}.json"


def finished_part(out: Path, plan: EncodePlan, index: int) -> PartRecord | None:
    """The record of part `index` if it is complete on disk (record and shard files)."""
    path = part_record_path(out, index)
    if not path.is_file():
        return None
    try:
        record = PartRecord.model_validate_json(path.read_bytes())
    except ValidationError:
        return None  # not ours, or damaged: the part is simply done again
    itemsize = numpy_dtype(plan.dtype).itemsize
    for shard in record.shards:
        file = out / shard.file
        if not file.is_file() or file.stat().st_size != shard.tokens * itemsize:
            return None
    return record


@contextmanager
def disk_full_named(out: Path) -> Iterator[None]:
    """A full disk inside the block becomes one line naming the folder (TokenShardsError).

    Nothing half-written is left to read: shards, part records and tokens.json appear
    under their names only once complete (temporary file + rename), so a rerun after
    space is freed starts again at the first part not finished."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise TokenShardsError(
            f"{out}: no space left on the device; free some space and run encode again "
            "(finished parts are kept)"
        ) from None


def encode_part(
    source: CorpusSource,
    out: Path,
    plan: EncodePlan,
    index: int,
    settings: EncodeSettings,
    on_progress: Callable[[int], None] | None = None,
) -> PartRecord:
    """Encode part `index` of the plan into its shard files and record it.

    Batches of documents are encoded on `settings.threads` threads while this thread
    reads the next ones; results are written in document order as they complete, so the
    output does not depend on the number of threads. At most two batches per thread are
    in flight: memory stays the same whatever the size of the corpus or the part.
    `on_progress(text_bytes)` is called after each batch is written.
    """
    with disk_full_named(out):
        return _encode_part(source, out, plan, index, settings, on_progress)


def _encode_part(
    source: CorpusSource,
    out: Path,
    plan: EncodePlan,
    index: int,
    settings: EncodeSettings,
    on_progress: Callable[[int], None] | None,
) -> PartRecord:
    started = time.perf_counter()
    first, end = plan.parts[index]
    tokenizer = tokenizer_in(out)
    split = ValidationSplit(plan.val_fraction)
    threads = settings.thread_count()
    dataset = source.open()
    documents = dict.fromkeys(SPLITS, 0)
    text_bytes = dict.fromkeys(SPLITS, 0)
    with ExitStack() as stack:
        writers = {
            name: stack.enter_context(ShardWriter(out / shard_name(name, index), plan.dtype))
            for name in SPLITS
        }
        pool = stack.enter_context(ThreadPoolExecutor(threads, thread_name_prefix="encode"))
        in_flight: deque[Future[EncodedBatch]] = deque()

        def write_oldest() -> None:
            batch = in_flight.popleft().result()
            for name in SPLITS:
                writers[name].write(batch.ids[name])
                documents[name] += batch.documents[name]
                text_bytes[name] += batch.text_bytes[name]
            if on_progress is not None:
                on_progress(sum(batch.text_bytes.values()))

        batches = iter_text_tables(source, dataset, first, end, settings.batch_documents)
        for _, texts in batches:
            job = pool.submit(encode_documents, tokenizer, texts.to_pylist(), split, plan.dtype)
            in_flight.append(job)
            if len(in_flight) > 2 * threads:
                write_oldest()
        while in_flight:
            write_oldest()
        # A split without documents in this part gets no file (its writer discards it).
        shards = [
            writers[name].commit(
                split=name, part=index, documents=documents[name], text_bytes=text_bytes[name]
            )
            for name in SPLITS
            if documents[name]
        ]
    del dataset  # lets go of the mapped corpus pages this part read
    record = PartRecord(
        part=index,
        first_document=first,
        end_document=end,
        shards=shards,
        seconds=time.perf_counter() - started,
    )
    (out / PARTS_DIR).mkdir(exist_ok=True)
    write_json_atomically(part_record_path(out, index), record)  # last: the part is done
    return record


# ---------------------------------------------------------------------------------------
# Metadata


def finish(out: Path, plan: EncodePlan, source: CorpusSource) -> TokenShardsMeta:
    """Gather the part records into tokens.json (written last: the folder is complete)."""
    with disk_full_named(out):
        return _finish(out, plan, source)


def _finish(out: Path, plan: EncodePlan, source: CorpusSource) -> TokenShardsMeta:
    records = []
    for index in range(len(plan.parts)):
        record = finished_part(out, plan, index)
        if record is None:
            raise TokenShardsError(f"{out}: part {index} is not finished; run encode again")
        records.append(record)
    shards = [shard for record in records for shard in record.shards]

    def total(attribute: str) -> dict[str, int]:
        return {
            name: sum(getattr(s, attribute) for s in shards if s.split == name) for name in SPLITS
        }

    assert plan.tokenizer_fingerprint is not None and plan.eot_token is not None
    held_out = total("documents")["val"]
    if held_out == 0:  # the hash put none there, though some were expected
        raise TokenShardsError(
            f"{out}: no document fell into the validation split ({source.documents} "
            f"documents x val_fraction {plan.val_fraction:g}); encode again into a new "
            "folder with a larger --val-fraction"
        )
    meta = TokenShardsMeta(
        dtype=plan.dtype,
        vocab_size=plan.vocab_size,
        eot_token=plan.eot_token,
        tokenizer={
            "name": plan.tokenizer_name or "",
            "fingerprint": plan.tokenizer_fingerprint,
            "choice": plan.tokenizer_choice,
            "folder": TOKENIZER_DIR,
        },
        corpus={"path": str(source.path), "fingerprint": source.fingerprint},
        split={
            "val_fraction": plan.val_fraction,
            "method": "blake2b-64 of the UTF-8 text < val_fraction * 2**64",
        },
        documents=total("documents"),
        tokens=total("tokens"),
        text_bytes=total("text_bytes"),
        shards=shards,
        fingerprint=tokens_fingerprint(plan.dtype, plan.tokenizer_fingerprint, shards),
    )
    write_json_atomically(out / META_FILE, meta)
    return meta


# ---------------------------------------------------------------------------------------
# All of it, without Prefect (for scripts, notebooks and benchmarks)


def start_encoding(
    source: CorpusSource, out: Path, choice: TokenizerChoice, settings: EncodeSettings
) -> EncodePlan:
    """Plan, check the output folder, get the tokenizer, and record the plan.

    Everything that can be refused is refused before anything is written (a trained
    tokenizer's vocabulary is known in advance; a loaded one is loaded first).
    """
    with disk_full_named(out):
        return _start_encoding(source, out, choice, settings)


def _start_encoding(
    source: CorpusSource, out: Path, choice: TokenizerChoice, settings: EncodeSettings
) -> EncodePlan:
    loaded = None
    if choice.train_tokenizer:
        if choice.vocab_size is None:
            raise TokenShardsError("train_tokenizer needs vocab_size (--vocab-size)")
        vocab_size = choice.vocab_size
    else:
        loaded = load_tokenizer(choice.tokenizer)
        vocab_size = loaded.n_vocab
    plan = plan_encoding(source, choice, settings, vocab_size)
    if not (out / PLAN_FILE).is_file():
        record_plan(out, plan)  # before the tokenizer folder appears in `out`
    check_folder(out, plan)
    for leftover in out.glob(".*.bin.*.tmp"):  # a shard being written when a run was killed
        leftover.unlink()
    if loaded is not None:
        tokenizer = keep_tokenizer_copy(loaded, out)
    else:
        tokenizer = train_tokenizer(source, choice, out, settings.val_fraction)
    plan = plan.model_copy(
        update={
            "tokenizer_name": tokenizer.name,
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "eot_token": tokenizer.eot_token,
        }
    )
    record_plan(out, plan)  # now with the tokenizer's fingerprint
    return plan


def encode_corpus(
    source: CorpusSource,
    out: str | Path,
    choice: TokenizerChoice | None = None,
    settings: EncodeSettings | None = None,
) -> TokenShardsMeta:
    """Corpus -> tokens folder in one call; a rerun skips the finished parts."""
    out = Path(out)
    choice = choice or TokenizerChoice()
    settings = settings or EncodeSettings()
    plan = start_encoding(source, out, choice, settings)
    for index in range(len(plan.parts)):
        if finished_part(out, plan, index) is None:
            encode_part(source, out, plan, index, settings)
    return finish(out, plan, source)
