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


# --- mistakes fail at once, never after the hub client's retries ----------------------


@pytest.fixture
def no_hub_calls(monkeypatch) -> list:
    """Records any call to huggingface_hub.hf_hub_download (and fails it)."""
    import huggingface_hub

    calls: list = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    return calls


@pytest.mark.parametrize(
    "text", ["./ckpt", "../ckpt", "/data/model", "~/model", "runs/a/b", "workspace/nope"]
)
def test_a_missing_folder_written_as_a_path_fails_without_asking_the_hub(
    text, tmp_path, monkeypatch, no_hub_calls
):
    from model.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "workspace").mkdir()  # so "workspace/nope" names a folder here
    with pytest.raises(CheckpointError, match=f"^no such checkpoint folder: {text}$"):
        load_model(text)
    assert no_hub_calls == []


def test_owner_slash_name_is_a_hub_id_when_no_such_folder_is_here(tmp_path, monkeypatch):
    from model.hub import looks_like_a_path

    monkeypatch.chdir(tmp_path)
    assert not looks_like_a_path("openai-community/gpt2")
    assert not looks_like_a_path("gpt2")
    (tmp_path / "openai-community").mkdir()
    assert looks_like_a_path("openai-community/gpt2")  # a folder of that name is here


def test_offline_only_the_cache_is_asked(hub_cache, monkeypatch):
    """With the hub unreachable, huggingface_hub is told to use its cache only, so a hub
    id that is not cached fails in one line at once instead of retrying for 25 s."""
    import huggingface_hub

    from model import hub
    from model.errors import CheckpointError

    asked: list[dict] = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        asked.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(
        CheckpointError, match="could not be fetched .* \\(offline or not cached\\)"
    ):
        load_model("someone/not-cached")
    assert asked and all(kwargs.get("local_files_only") for kwargs in asked)


def test_the_hub_is_unreachable_offline_or_when_its_host_refuses(monkeypatch):
    import socket

    from model.hub import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    assert not hub_reachable()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as listening:  # a local "hub" that accepts connections
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        hub_reachable.cache_clear()
        assert hub_reachable()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # now closed: refused
    hub_reachable.cache_clear()
    assert not hub_reachable()
    hub_reachable.cache_clear()
