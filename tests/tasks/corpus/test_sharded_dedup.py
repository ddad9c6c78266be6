"""Sharded dedup: signatures per shard, one decision across shards, equal to find_duplicates."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tasks.corpus import sharded_dedup
from tasks.corpus.dedup import DedupSettings, find_duplicates
from tasks.corpus.records import Verdict
from tasks.corpus.sharded_dedup import (
    band_layout,
    find_duplicates_across_shards,
    shard_signature_files,
    write_shard_signatures,
)

SETTINGS = DedupSettings()


def vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    """Made-up words: two texts drawn from them share almost no 5-grams."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(size)]


def edit(text: str, share: float, rng: random.Random, words: list[str]) -> str:
    """`text` with about `share` of its words replaced (at least one)."""
    tokens = text.split()
    for _ in range(max(1, round(len(tokens) * share))):
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
    return " ".join(tokens)


def sharded(
    docs: list[tuple[int, str]],
    directory: Path,
    shards: int,
    rng: random.Random,
    settings: DedupSettings = SETTINGS,
) -> dict[int, Verdict]:
    """Deal the documents to shards at random (interleaved indexes), sign the shards in a
    shuffled order, each in shuffled document order, and decide across them."""
    dealt: list[list[tuple[int, str]]] = [[] for _ in range(shards)]
    for doc in docs:
        dealt[rng.randrange(shards)].append(doc)
    order = list(range(shards))
    rng.shuffle(order)
    paths = []
    for shard in order:
        rng.shuffle(dealt[shard])
        path = directory / f"shard-{shard:02d}.dedup.parquet"
        assert write_shard_signatures(dealt[shard], path, settings) == len(dealt[shard])
        paths.append(path)
    return find_duplicates_across_shards(paths, settings)


def chain(rng: random.Random, words: list[str]) -> list[str]:
    """A, B, C with A~B and B~C at the default threshold but A !~ C: 200 words, 3 edits
    per step (estimated Jaccard about 0.86 per step, about 0.74 from A to C)."""
    first = " ".join(rng.choices(words, k=200))
    second = edit(first, 0.015, rng, words)
    return [first, second, edit(second, 0.015, rng, words)]


def test_band_layout_is_datasketchs_choice_for_the_settings():
    assert band_layout(SETTINGS) == (14, 9)
    assert band_layout(DedupSettings(threshold=0.5, num_perm=64)) != (14, 9)


def test_chain_keeps_the_third_document_as_find_duplicates_does(tmp_path):
    rng = random.Random(3)
    words = vocabulary(rng)
    docs = list(enumerate(chain(rng, words)))
    expected = find_duplicates(docs, SETTINGS)
    assert set(expected) == {1}  # B dropped as a copy of A; C kept, B being dropped
    assert expected[1].detail.startswith("~#0 ")
    assert sharded(docs, tmp_path, 3, rng) == expected


def test_exact_copy_of_a_dropped_near_copy_names_the_dropped_one(tmp_path):
    rng = random.Random(4)
    words = vocabulary(rng)
    first, second, _ = chain(rng, words)
    docs = [(0, first), (5, second), (9, second.upper() + " !")]
    verdicts = sharded(docs, tmp_path, 2, rng)
    assert verdicts == find_duplicates(docs, SETTINGS)
    assert verdicts[5].reason == "near_duplicate"
    assert verdicts[9] == Verdict("dedup", "exact_duplicate", "same as #5")


@pytest.mark.parametrize("exact", [True, False])
def test_empty_texts_are_exact_copies_of_each_other_and_never_near(tmp_path, exact):
    settings = DedupSettings(exact=exact)
    docs = [(0, ""), (1, "  ?! "), (2, "a short text"), (3, "A short text.")]
    verdicts = sharded(docs, tmp_path, 2, random.Random(5), settings)
    assert verdicts == find_duplicates(docs, settings)
    if exact:
        assert set(verdicts) == {1, 3}
    else:  # the two short texts are then near copies (equal signatures); empty ones kept
        assert set(verdicts) == {3}


def test_an_interrupted_write_leaves_no_file_and_a_left_temp_file_is_never_read(tmp_path):
    def docs_then_crash():
        yield 0, "one document"
        raise RuntimeError("worker lost")

    path = tmp_path / "shard-00.dedup.parquet"
    with pytest.raises(RuntimeError, match="worker lost"):
        write_shard_signatures(docs_then_crash(), path, SETTINGS)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="shard-00.dedup.parquet"):
        find_duplicates_across_shards([path], SETTINGS)

    # A worker killed mid-write leaves its temporary file: listing skips it.
    whole = tmp_path / "shard-01.dedup.parquet"
    write_shard_signatures([(1, "one document"), (2, "One document!")], whole, SETTINGS)
    left = tmp_path / f".{path.name}.4242.tmp"
    left.write_bytes(whole.read_bytes()[:100])
    assert shard_signature_files(tmp_path) == [whole]
    verdicts = find_duplicates_across_shards(shard_signature_files(tmp_path), SETTINGS)
    assert verdicts == {2: Verdict("dedup", "exact_duplicate", "same as #1")}
    # ...and a truncated file handed in by name is refused, named, not half read.
    with pytest.raises(ValueError, match=r"\.4242\.tmp: not a signature file"):
        find_duplicates_across_shards([left], SETTINGS)


@pytest.mark.parametrize(
    ("other", "field"),
    [
        (DedupSettings(num_perm=64), "num_perm=64"),
        (DedupSettings(threshold=0.7), "threshold=0.7"),
        (DedupSettings(seed=2), "seed=2"),
    ],
)
def test_a_file_from_other_settings_is_refused_by_name(tmp_path, other, field):
    good, bad = tmp_path / "a.dedup.parquet", tmp_path / "b.dedup.parquet"
    write_shard_signatures([(0, "some text here")], good, SETTINGS)
    write_shard_signatures([(1, "other text here")], bad, other)
    with pytest.raises(ValueError, match=rf"^{bad}: .*{field} \(expected") as error:
        find_duplicates_across_shards([good, bad], SETTINGS)
    assert "\n" not in str(error.value)


def test_an_empty_shard_is_a_shard(tmp_path):
    empty, full = tmp_path / "a.dedup.parquet", tmp_path / "b.dedup.parquet"
    assert write_shard_signatures([], empty, SETTINGS) == 0
    write_shard_signatures([(0, "x y z"), (1, "X, y z!")], full, SETTINGS)
    assert find_duplicates_across_shards([empty], SETTINGS) == {}
    assert find_duplicates_across_shards([empty, full], SETTINGS) == {
        1: Verdict("dedup", "exact_duplicate", "same as #0")
    }


def test_a_document_in_two_shards_is_refused(tmp_path):
    first, second = tmp_path / "a.dedup.parquet", tmp_path / "b.dedup.parquet"
    write_shard_signatures([(0, "x y z"), (7, "q")], first, SETTINGS)
    write_shard_signatures([(7, "q")], second, SETTINGS)
    with pytest.raises(ValueError, match="document #7 appears more than once"):
        find_duplicates_across_shards([first, second], SETTINGS)


def corpus(count: int, seed: int = 0) -> tuple[list[tuple[int, str]], list[tuple[int, int, int]]]:
    """`count` documents as a web crawl has them: unrelated texts, exact copies (some
    differing in case and punctuation), near copies with 1-5% of the words edited, and
    chains A~B~C with A !~ C. Returns the documents and the chains' indexes."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    texts: list[str] = []
    chains: list[tuple[int, int, int]] = []
    while len(texts) < count:
        roll = rng.random()
        if texts and roll < 0.12:
            copy = rng.choice(texts[-500:] if rng.random() < 0.5 else texts)
            texts.append(copy if rng.random() < 0.5 else copy.upper() + "!")
        elif texts and roll < 0.32:
            texts.append(edit(rng.choice(texts), rng.uniform(0.01, 0.05), rng, words))
        elif roll < 0.38:
            start = len(texts)
            texts.extend(chain(rng, words))
            chains.append((start, start + 1, start + 2))
        else:
            texts.append(" ".join(rng.choices(words, k=rng.randint(30, 120))))
    return list(enumerate(texts[:count])), [c for c in chains if c[2] < count]


@pytest.mark.slow
def test_equal_to_find_duplicates_on_20000_documents_in_8_shards(tmp_path, monkeypatch):
    # Small row groups, so that every file is read back across several of them.
    monkeypatch.setattr(sharded_dedup, "_ROWS_PER_BATCH", 300)
    docs, chains = corpus(20_000)
    expected = find_duplicates(docs, SETTINGS)

    # The corpus holds every case the greedy rule makes tricky, or the test proves little.
    reasons = Counter(verdict.reason for verdict in expected.values())
    assert reasons["exact_duplicate"] > 1000 and reasons["near_duplicate"] > 1000
    assert any(b in expected and c not in expected for _, b, c in chains)
    near = {idx for idx, verdict in expected.items() if verdict.reason == "near_duplicate"}
    assert any(
        verdict.detail.removeprefix("same as #").isdigit()
        and int(verdict.detail.removeprefix("same as #")) in near
        for verdict in expected.values()
    )

    assert sharded(docs, tmp_path, 8, random.Random(1)) == expected
