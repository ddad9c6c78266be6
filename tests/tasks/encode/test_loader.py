"""Reading shards for training: random windows, and a sequential pass for validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.encode.loader import RandomWindows, sequential_windows
from tasks.encode.token_shards import (
    ShardWriter,
    TokenShardsError,
    TokenShardsMeta,
    open_shards,
    shard_name,
    tokens_fingerprint,
    write_json_atomically,
)


def write_tokens(folder: Path, shards: dict[str, list[np.ndarray]]) -> None:
    """A tokens folder holding exactly these arrays (ids < 1000), with its tokens.json."""
    folder.mkdir()
    infos = []
    for split, arrays in shards.items():
        for part, ids in enumerate(arrays):
            with ShardWriter(folder / shard_name(split, part), "uint16") as writer:
                writer.write(ids)
                infos.append(writer.commit(split=split, part=part, documents=1, text_bytes=0))
    totals = {s: sum(i.tokens for i in infos if i.split == s) for s in ("train", "val")}
    meta = TokenShardsMeta(
        dtype="uint16",
        vocab_size=1000,
        eot_token=999,
        tokenizer={},
        corpus={},
        split={},
        documents=dict.fromkeys(totals, 1),
        tokens=totals,
        text_bytes=dict.fromkeys(totals, 0),
        shards=infos,
        fingerprint=tokens_fingerprint("uint16", "t", infos),
    )
    write_json_atomically(folder / "tokens.json", meta)


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    # Consecutive numbers make every window easy to check: shard k holds k*300 .. .
    train = [np.arange(0, 300), np.arange(300, 350), np.arange(350, 900)]
    val = [np.arange(0, 47), np.arange(47, 101)]
    write_tokens(tmp_path / "tokens", {"train": train, "val": val})
    return tmp_path / "tokens"


def test_random_windows_are_next_token_pairs_inside_one_shard(tokens):
    windows = RandomWindows(tokens, context=64, batch_size=16, seed=1)
    for _ in range(20):
        x, y = windows.batch()
        assert x.shape == y.shape == (16, 64) and x.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])  # y is x moved on by one token
        # Consecutive ids: no window crosses from one shard into another.
        assert torch.all(y - x == 1)
        assert not torch.any((x < 300) & (y >= 300)) and x.max() < 899
    # The 50-token shard is too short for a window of 65 and is never used.
    assert len(windows.shards) == 2


def test_random_windows_repeat_with_the_seed_and_resume_from_their_state(tokens):
    a, b = (RandomWindows(tokens, context=8, batch_size=4, seed=3) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.batch(), b.batch(), strict=True))
    state = a.state_dict()
    expected = a.batch()
    c = RandomWindows(tokens, context=8, batch_size=4, seed=99)
    c.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(c.batch(), expected, strict=True))


def test_sequential_windows_predict_every_token_once_in_order(tokens):
    batches = list(sequential_windows(tokens, context=10, batch_size=4))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    # 101 val tokens across two shards: windows of 11 starting every 10 -> 10 windows, and
    # the targets are tokens 1..100, each once, read across the shard boundary at 47.
    assert x.shape == (10, 10)
    assert y.flatten().tolist() == list(range(1, 101))
    assert [len(b[0]) for b in batches] == [4, 4, 2]


def test_too_little_text_for_one_window_is_a_clear_error(tokens):
    with pytest.raises(TokenShardsError, match="no shard with more than 1000 tokens"):
        RandomWindows(tokens, context=1000, batch_size=1)
    with pytest.raises(TokenShardsError, match="101 tokens, fewer than one window of 201"):
        next(sequential_windows(tokens, context=200, batch_size=1))


def test_a_truncated_shard_is_reported_not_read(tokens):
    shard = tokens / "train-000001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(TokenShardsError, match=r"train-000001.bin: expected 100 bytes \(50 tokens"):
        open_shards(tokens, "train")


def test_a_folder_without_metadata_is_not_finished(tmp_path):
    with pytest.raises(TokenShardsError, match="tokens.json is missing"):
        RandomWindows(tmp_path, context=4, batch_size=1)
