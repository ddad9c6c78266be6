"""Hub ids: loaded through huggingface_hub's cache exactly as after a real download.

Tests never reach the network (HF_HUB_OFFLINE=1), so we lay files out the way
huggingface_hub caches a downloaded repository and check that a hub id finds them, which
exercises the same code path as an online first use, minus the transfer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from model import load_model, load_tokenizer


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _cache_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """The layout huggingface_hub writes: refs/main names a snapshot folder of files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)


def test_model_by_hub_id_from_the_cache(hub_cache, hf_folder, hf_model, random_tokens):
    _cache_repo(
        hub_cache,
        "someone/tiny-gpt2",
        {name: hf_folder / name for name in ("config.json", "model.safetensors")},
    )
    model = load_model("someone/tiny-gpt2").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(random_tokens)[0], hf_model(random_tokens).logits, atol=1e-4, rtol=0
        )


def test_tokenizer_by_hub_id_from_the_cache(hub_cache, gpt2_vocab_dir):
    _cache_repo(
        hub_cache,
        "someone/gpt2-tokenizer",
        {"vocab.json": gpt2_vocab_dir / "encoder.json", "merges.txt": gpt2_vocab_dir / "vocab.bpe"},
    )
    tokenizer = load_tokenizer("someone/gpt2-tokenizer")
    assert tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.name == "someone/gpt2-tokenizer"
