"""Encoding a corpus into shards: exact round trip, determinism, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.tokenizer import load_tokenizer
from tasks.encode import encode as encode_module
from tasks.encode.corpus_source import CorpusSourceError, open_corpus
from tasks.encode.encode import (
    EncodeSettings,
    TokenizerChoice,
    ValidationSplit,
    encode_corpus,
)
from tasks.encode.token_shards import (
    TokenShardsError,
    open_shards,
    read_meta,
    verify_shards,
)
from tests.tasks.encode.conftest import save_dataset

# Small parts, so that even the test corpus spans several shards per split.
SMALL = EncodeSettings(shard_mb=0.05, val_fraction=0.2, batch_documents=8, threads=2)


@pytest.fixture
def gpt2(gpt2_vocab_dir: Path) -> TokenizerChoice:
    return TokenizerChoice(tokenizer=str(gpt2_vocab_dir))


def decoded_documents(tokens_dir: Path, split: str) -> list[str]:
    """The split's shards decoded and cut at every <|endoftext|>."""
    meta = read_meta(tokens_dir)
    tokenizer = load_tokenizer(tokens_dir / "tokenizer")
    ids = np.concatenate([np.asarray(s) for s in open_shards(tokens_dir, split)]).tolist()
    documents, current = [], []
    for token in ids:
        if token == meta.eot_token:
            documents.append(tokenizer.decode(current))
            current = []
        else:
            current.append(token)
    assert current == [], "every document must end with <|endoftext|>"
    return documents


def shard_bytes(tokens_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tokens_dir.glob("*.bin"))}


def test_shards_decode_to_every_document_in_order(corpus_dir, documents, gpt2, tmp_path):
    meta = encode_corpus(open_corpus(corpus_dir), tmp_path / "tokens", gpt2, SMALL)

    split = ValidationSplit(SMALL.val_fraction)
    expected = {"train": [], "val": []}
    for text in documents:
        expected["val" if split.is_validation(text.encode()) else "train"].append(text)
    for name in ("train", "val"):
        assert decoded_documents(tmp_path / "tokens", name) == expected[name]
        assert meta.documents[name] == len(expected[name]) > 0
        assert len(meta.shards_of(name)) >= 2
    assert meta.dtype == "uint16" and meta.vocab_size == 50257
    assert meta.corpus["fingerprint"] == "f" * 64  # the one corpus.json recorded
    # The separator inside a document stays text: one <|endoftext|> per document, no more.
    ids = np.concatenate([np.asarray(s) for s in open_shards(tmp_path / "tokens", "train")])
    assert int((ids == meta.eot_token).sum()) == meta.documents["train"]
    verify_shards(tmp_path / "tokens")


def test_same_corpus_and_config_give_identical_bytes(corpus_dir, gpt2, tmp_path):
    source = open_corpus(corpus_dir)
    first = encode_corpus(source, tmp_path / "a", gpt2, SMALL)
    # Another thread count and batch size change how the work is cut, not the result.
    other = SMALL.model_copy(update={"threads": 1, "batch_documents": 3})
    second = encode_corpus(source, tmp_path / "b", gpt2, other)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert first.fingerprint == second.fingerprint
    # A different split changes the tokens' fingerprint.
    third = encode_corpus(
        source, tmp_path / "c", gpt2, SMALL.model_copy(update={"val_fraction": 0.5})
    )
    assert third.fingerprint != first.fingerprint


def test_the_split_depends_only_on_the_text():
    split = ValidationSplit(0.25)
    texts = [f"document number {i}" for i in range(4000)]
    chosen = [split.is_validation(t.encode()) for t in texts]
    assert 0.22 < sum(chosen) / len(chosen) < 0.28
    assert chosen == [split.is_validation(t.encode()) for t in reversed(texts)][::-1]
    assert not any(ValidationSplit(0.0).is_validation(t.encode()) for t in texts)


def test_an_interrupted_run_resumes_without_redoing_finished_parts(
    corpus_dir, gpt2, tmp_path, monkeypatch
):
    source = open_corpus(corpus_dir)
    clean = encode_corpus(source, tmp_path / "clean", gpt2, SMALL)

    real = encode_module.encode_documents
    calls = {"n": 0}

    def fail_on_the_tenth_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of a part
        return real(*args, **kwargs)

    monkeypatch.setattr(encode_module, "encode_documents", fail_on_the_tenth_batch)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(source, out, gpt2, SMALL)
    assert not (out / "tokens.json").exists()
    assert not list(out.glob(".*.tmp")), "a half-written shard was left behind"
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("*.bin")}
    assert done, "the first parts should have been finished before the interruption"

    monkeypatch.setattr(encode_module, "encode_documents", real)
    resumed = encode_corpus(source, out, gpt2, SMALL)
    assert resumed.fingerprint == clean.fingerprint
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done  # not rewritten


def test_a_trained_tokenizer_is_learnt_from_training_documents_only(
    corpus_dir, documents, tmp_path
):
    choice = TokenizerChoice(train_tokenizer=True, vocab_size=400)
    meta = encode_corpus(open_corpus(corpus_dir), tmp_path / "tokens", choice, SMALL)
    assert meta.vocab_size == 400 and meta.tokenizer["choice"] == "trained:400"
    tokenizer = load_tokenizer(tmp_path / "tokens" / "tokenizer")
    assert tokenizer.fingerprint == meta.tokenizer["fingerprint"]
    assert len(tokenizer.merges()) == 400 - 257
    split = ValidationSplit(SMALL.val_fraction)
    expected = [t for t in documents if split.is_validation(t.encode())]
    assert decoded_documents(tmp_path / "tokens", "val") == expected
    # Run again: the tokenizer and the shards are reused as they are.
    again = encode_corpus(open_corpus(corpus_dir), tmp_path / "tokens", choice, SMALL)
    assert again.fingerprint == meta.fingerprint


def test_a_folder_made_with_another_config_is_refused_untouched(corpus_dir, gpt2, tmp_path):
    source = open_corpus(corpus_dir)
    encode_corpus(source, tmp_path / "tokens", gpt2, SMALL)
    before = shard_bytes(tmp_path / "tokens")
    other = SMALL.model_copy(update={"val_fraction": 0.1})
    with pytest.raises(TokenShardsError, match=r"another val_fraction \(0.2, now 0.1\)"):
        encode_corpus(source, tmp_path / "tokens", gpt2, other)
    assert shard_bytes(tmp_path / "tokens") == before

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TokenShardsError, match="not empty"):
        encode_corpus(source, tmp_path / "mine", gpt2, SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_uint16_is_refused_for_a_vocabulary_it_cannot_hold(corpus_dir, tmp_path):
    choice = TokenizerChoice(train_tokenizer=True, vocab_size=70_000)
    forced = SMALL.model_copy(update={"dtype": "uint16"})
    with pytest.raises(TokenShardsError, match=r"uint16 cannot hold token ids up to 69999"):
        encode_corpus(open_corpus(corpus_dir), tmp_path / "tokens", choice, forced)
    assert not (tmp_path / "tokens").exists()  # refused before anything was written


def test_a_large_vocabulary_gets_uint32(corpus_dir, gpt2, tmp_path):
    from tasks.encode.token_shards import choose_dtype

    assert choose_dtype(65_536) == "uint16"  # ids 0..65535
    assert choose_dtype(65_537) == "uint32"
    assert choose_dtype(50_257, "uint32") == "uint32"
    meta = encode_corpus(
        open_corpus(corpus_dir), tmp_path / "t", gpt2, SMALL.model_copy(update={"dtype": "uint32"})
    )
    assert meta.dtype == "uint32"
    assert decoded_documents(tmp_path / "t", "val") == decoded_documents_via(corpus_dir, gpt2)


def decoded_documents_via(corpus_dir: Path, gpt2: TokenizerChoice) -> list[str]:
    import datasets

    split = ValidationSplit(SMALL.val_fraction)
    texts = datasets.load_from_disk(str(corpus_dir / "dataset"))["text"]
    return [t for t in texts if split.is_validation(t.encode())]


# ---------------------------------------------------------------------------------------
# Bad corpora: one clear line, nothing written


def test_a_corpus_too_small_for_its_validation_share_is_refused_before_any_work(tmp_path, gpt2):
    corpus_dir = save_dataset(tmp_path / "c", [f"document number {n}" for n in range(20)])
    with pytest.raises(TokenShardsError) as error:
        encode_corpus(open_corpus(corpus_dir), tmp_path / "t", gpt2, EncodeSettings())
    assert str(error.value) == (
        f"corpus {corpus_dir}: 20 documents x val_fraction 0.005 leaves 0.1 expected for "
        "validation, and training needs at least 2: give --val-fraction 0.1 or more"
    )
    assert not (tmp_path / "t").exists()  # nothing written


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: save_dataset(d, []), "has no documents"),
        # Enough documents that the validation share is not what is refused.
        (lambda d: save_dataset(d, ["fine", None, *["also fine"] * 30]), r"row 1: .* is null"),
        (lambda d: _dataset_with(d, {"text": [1, 2, 3]}), r"column 'text' holds .*int64.*not text"),
        (lambda d: _dataset_with(d, {"body": ["a", "b"]}), r"no column 'text' \(columns: body\)"),
        (lambda d: d.mkdir() or d, "neither a corpus folder"),
        (lambda d: d, "no such folder"),
    ],
)
def test_bad_corpora_are_refused_with_one_line(tmp_path, gpt2, make, message):
    corpus = make(tmp_path / "corpus")
    with pytest.raises(CorpusSourceError, match=message) as error:
        encode_corpus(open_corpus(corpus), tmp_path / "tokens", gpt2, SMALL)
    assert "\n" not in str(error.value) and "corpus" in str(error.value)
    assert not (tmp_path / "tokens").exists()


def _dataset_with(folder: Path, columns: dict) -> Path:
    import datasets

    datasets.Dataset.from_dict(columns).save_to_disk(str(folder))
    return folder


def test_a_dataset_with_several_splits_asks_for_one(tmp_path):
    import datasets

    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a"]}),
            "test": datasets.Dataset.from_dict({"text": ["b"]}),
        }
    ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(CorpusSourceError, match="several splits"):
        open_corpus(tmp_path / "dd")


def test_a_damaged_corpus_summary_is_named(corpus_dir):
    (corpus_dir / "corpus.json").write_text(json.dumps({"format": "gpt2lab.corpus"}))
    with pytest.raises(CorpusSourceError, match=r"corpus.json: not a corpus summary"):
        open_corpus(corpus_dir)


_ENCODE_IN_A_CHILD = """
import sys
from tasks.encode.corpus_source import open_corpus
from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus
corpus, out, vocab = sys.argv[1:]
settings = EncodeSettings(shard_mb=0.02, val_fraction=0.2, threads=1, batch_documents=4)
encode_corpus(open_corpus(corpus), out, TokenizerChoice(tokenizer=vocab), settings)
"""


def test_a_killed_run_resumes_to_the_same_shards(tmp_path, gpt2_vocab_dir):
    import signal
    import subprocess
    import sys
    import time

    from benchmarks.varied_text import varied_documents

    corpus = save_dataset(tmp_path / "corpus", varied_documents(1_500_000, seed=2))
    out = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", _ENCODE_IN_A_CHILD, str(corpus), str(out), str(gpt2_vocab_dir)]
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("parts/*.json"))) < 3 and time.monotonic() < deadline:
            assert child.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)  # no clean-up runs: as a crash or the OOM killer
    finally:
        child.wait()
    assert not (out / "tokens.json").exists(), "killed too late: the run had finished"
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.bin")}
    # Whether or not the kill caught a shard half-written, make sure one is left over.
    (out / ".train-000099.bin.x1y2.tmp").write_bytes(b"half a shard")

    settings = EncodeSettings(shard_mb=0.02, val_fraction=0.2, threads=1, batch_documents=4)
    choice = TokenizerChoice(tokenizer=str(gpt2_vocab_dir))
    resumed = encode_corpus(open_corpus(corpus), out, choice, settings)
    clean = encode_corpus(open_corpus(corpus), tmp_path / "clean", choice, settings)
    assert resumed.fingerprint == clean.fingerprint
    assert shard_bytes(out) == shard_bytes(tmp_path / "clean")
    assert not list(out.glob(".*.tmp")), "a killed run's partial shard was left behind"
    # Shards finished before the kill were kept, not written again (a part's record comes
    # after its shards, so a shard without a record may be redone: that is the point).
    kept = {name for name in finished if (out / name).stat().st_mtime_ns == finished[name]}
    assert len(kept) >= 3
