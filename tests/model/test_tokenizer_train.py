"""Training a byte-level BPE vocabulary and saving it in GPT-2's own layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.varied_text import varied_documents
from model.tokenizer import ReferenceBPE, Tokenizer, load_tokenizer, train_bpe
from model.tokenizer.byte_map import bytes_to_unicode
from model.tokenizer.train import _first_merge_per_token

VOCAB_SIZE = 600
UNSEEN = "Ünïcödé 𝔘𝔫𝔦 ∮ E⋅da = Q, ハロー 🦄🧑🏾‍🚀 ⁂ \u2028 Ωμέγα ⅷ 1234567890123 <|endoftext|>"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    corpus = varied_documents(300_000, seed=1)
    return train_bpe(corpus, VOCAB_SIZE, tmp_path_factory.mktemp("trained") / "tok600")


def test_trained_tokenizer_has_the_requested_size(trained: Tokenizer) -> None:
    assert trained.name == "tok600"  # the folder's name
    assert trained.n_vocab == VOCAB_SIZE
    assert trained.eot_token == VOCAB_SIZE - 1


def test_trained_files_follow_gpt2_conventions(trained: Tokenizer, tmp_path: Path) -> None:
    trained.save(tmp_path)
    vocab = json.loads((tmp_path / "encoder.json").read_text(encoding="utf-8"))
    merges = (tmp_path / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(merges) - 1 == VOCAB_SIZE - 257
    assert len(vocab) == VOCAB_SIZE
    # bytes first in GPT-2's order, then one id per merge in merge order, eot last
    assert [vocab[c] for c in bytes_to_unicode().values()] == list(range(256))
    for rank, line in enumerate(merges[1:], start=256):
        left, right = line.split(" ")
        assert vocab[left + right] == rank
    assert vocab["<|endoftext|>"] == VOCAB_SIZE - 1


def test_reloaded_trained_tokenizer_gives_same_ids(trained: Tokenizer, tmp_path: Path) -> None:
    trained.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.json", "vocab.bpe"]
    reloaded = load_tokenizer(tmp_path)
    reference = ReferenceBPE(tmp_path)
    for doc in varied_documents(100_000, seed=99) + [UNSEEN]:
        ids = trained.encode(doc)
        assert reloaded.encode(doc) == ids
        assert reference.encode(doc) == ids
        assert trained.decode(ids) == doc
    assert reloaded.fingerprint == trained.fingerprint


def test_trained_tokenizer_round_trips_unseen_text(trained: Tokenizer) -> None:
    ids = trained.encode(UNSEEN)
    assert max(ids) < VOCAB_SIZE - 1
    assert trained.decode(ids) == UNSEEN
    assert trained.encode(UNSEEN, allow_special=True)[-1] == trained.eot_token


def test_trained_fingerprint_differs_from_gpt2(trained: Tokenizer, gpt2_vocab_dir: Path) -> None:
    assert trained.fingerprint != load_tokenizer(gpt2_vocab_dir).fingerprint


def test_retraining_into_the_same_folder_is_not_stale(tmp_path: Path) -> None:
    corpus = varied_documents(50_000, seed=3)
    first = train_bpe(corpus, 300, tmp_path)
    second = train_bpe(corpus, 280, tmp_path)
    assert (first.n_vocab, second.n_vocab) == (300, 280)
    assert load_tokenizer(tmp_path).fingerprint == second.fingerprint != first.fingerprint


def test_end_of_text_in_training_text_is_a_boundary(tmp_path: Path) -> None:
    tok = train_bpe(["abc<|endoftext|>abc"] * 50, 258, tmp_path)
    assert tok.token_bytes([256]) != [b"c<"]  # the one merge learnt is not across the marker


@pytest.mark.parametrize("size", [0, 256, 256.5, "600"])
def test_vocab_size_too_small_is_rejected(size: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 257"):
        train_bpe(["hello"], size, tmp_path)  # type: ignore[arg-type]


def test_corpus_too_small_for_the_vocab_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only allow") as err:
        train_bpe(["hello hello"], 1000, tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "encoder.json").exists()


def test_duplicate_merges_keep_the_first() -> None:
    # HF's trainer can learn "a bc" and later "ab c": both make "abc"; only the first counts.
    merges = [("b", "c"), ("a", "bc"), ("a", "b"), ("ab", "c"), ("abc", "d")]
    assert _first_merge_per_token(merges) == [("b", "c"), ("a", "bc"), ("a", "b"), ("abc", "d")]
