"""The shard files themselves: atomic writes, checked sizes and hashes, readable errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.encode.token_shards import (
    ShardWriter,
    TokenShardsError,
    read_meta,
    verify_shards,
)
from tests.tasks.encode.test_loader import write_tokens


def test_a_shard_appears_only_when_committed(tmp_path):
    path = tmp_path / "train-000000.bin"
    with pytest.raises(RuntimeError), ShardWriter(path, "uint16") as writer:
        writer.write(np.arange(10))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the shard nor its temporary file

    with ShardWriter(path, "uint16") as writer:
        writer.write(np.arange(10))
        writer.write(np.array([65_535]))
        info = writer.commit(split="train", part=0, documents=2, text_bytes=40)
    # Little-endian uint16, whatever the machine.
    assert path.read_bytes() == np.array([*range(10), 65_535], dtype="<u2").tobytes()
    assert (info.tokens, info.documents, info.file) == (11, 2, "train-000000.bin")


def test_verify_finds_a_changed_shard(tmp_path):
    write_tokens(tmp_path / "t", {"train": [np.arange(100)], "val": [np.arange(20)]})
    verify_shards(tmp_path / "t")
    data = bytearray((tmp_path / "t" / "val-000000.bin").read_bytes())
    data[0] ^= 1
    (tmp_path / "t" / "val-000000.bin").write_bytes(bytes(data))
    with pytest.raises(TokenShardsError, match="val-000000.bin: contents differ"):
        verify_shards(tmp_path / "t")


def test_damaged_metadata_names_the_field(tmp_path):
    write_tokens(tmp_path / "t", {"train": [np.arange(100)]})
    meta = json.loads((tmp_path / "t" / "tokens.json").read_text())
    meta["dtype"] = "int8"
    (tmp_path / "t" / "tokens.json").write_text(json.dumps(meta))
    with pytest.raises(TokenShardsError, match=r"tokens.json: field dtype: Input should be"):
        read_meta(tmp_path / "t")
