"""Fingerprints: stable for the same content, different for any change that matters."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from pathlib import Path

import pydantic
import pytest

from tasks import fingerprint as fpmod
from tasks.fingerprint import (
    fingerprint_config,
    fingerprint_file,
    fingerprint_folder,
    fingerprint_path,
    short,
)


def _make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


TREE = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)), "sub/deeper/c.txt": b"gamma"}


def test_file_fingerprint_is_plain_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"hello world")
    assert fingerprint_file(path) == hashlib.sha256(b"hello world").hexdigest()


def test_file_fingerprint_streams_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny chunk size makes a small file span many reads: the result must not change.
    content = bytes(range(256)) * 40
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    monkeypatch.setattr(fpmod, "_CHUNK_BYTES", 7)
    assert fingerprint_file(path) == hashlib.sha256(content).hexdigest()


def test_folder_fingerprint_ignores_location_and_write_order(tmp_path: Path) -> None:
    first = _make_tree(tmp_path / "one", TREE)
    second = _make_tree(tmp_path / "two", dict(reversed(list(TREE.items()))))
    assert fingerprint_folder(first) == fingerprint_folder(second)
    assert len(fingerprint_folder(first)) == 64


def test_folder_fingerprint_sees_content_names_and_moves(tmp_path: Path) -> None:
    base = fingerprint_folder(_make_tree(tmp_path / "base", TREE))

    edited = _make_tree(tmp_path / "edited", TREE)
    (edited / "sub/deeper/c.txt").write_bytes(b"gammA")

    renamed = _make_tree(tmp_path / "renamed", TREE)
    (renamed / "a.txt").rename(renamed / "a2.txt")

    moved = _make_tree(tmp_path / "moved", TREE)
    (moved / "sub/deeper/c.txt").rename(moved / "sub/c.txt")

    added = _make_tree(tmp_path / "added", TREE)
    (added / "empty.txt").write_bytes(b"")

    others = [fingerprint_folder(p) for p in (edited, renamed, moved, added)]
    assert base not in others
    assert len(set(others)) == len(others)


def test_folder_fingerprint_skips_dot_names_and_empty_folders(tmp_path: Path) -> None:
    base = fingerprint_folder(_make_tree(tmp_path / "base", TREE))
    noisy = _make_tree(tmp_path / "noisy", TREE)
    (noisy / ".DS_Store").write_bytes(b"junk")
    _make_tree(noisy, {".git/HEAD": b"ref", "sub/.tmp-shard.bin": b"half-written"})
    (noisy / "empty-folder").mkdir()
    assert fingerprint_folder(noisy) == base


def test_path_dispatches_on_file_and_folder(tmp_path: Path) -> None:
    tree = _make_tree(tmp_path / "t", TREE)
    assert fingerprint_path(tree) == fingerprint_folder(tree)
    assert fingerprint_path(tree / "a.txt") == fingerprint_file(tree / "a.txt")
    assert fingerprint_path(str(tree / "a.txt")) == fingerprint_file(tree / "a.txt")


@pytest.mark.parametrize("function", [fingerprint_path, fingerprint_file, fingerprint_folder])
def test_missing_path_gives_one_line_error_naming_it(tmp_path: Path, function) -> None:
    missing = tmp_path / "no-such" / "corpus"
    with pytest.raises(FileNotFoundError) as caught:
        function(missing)
    message = str(caught.value)
    assert str(missing) in message
    assert "\n" not in message


def test_file_symlink_counts_its_target(tmp_path: Path) -> None:
    plain = _make_tree(tmp_path / "plain", {"data.txt": b"same"})
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "elsewhere.txt").write_bytes(b"same")
    (linked / "data.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert fingerprint_folder(linked) == fingerprint_folder(plain)


class Colour(enum.Enum):
    RED = "red"


class ModelConfig(pydantic.BaseModel):
    name: str
    lr: float
    data: Path
    colour: Colour = Colour.RED
    layers: list[int] = [1, 2]


@dataclasses.dataclass
class DataConfig:
    name: str
    lr: float
    data: Path
    colour: Colour = Colour.RED
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])


def test_config_fingerprint_ignores_key_order_and_type() -> None:
    as_dict = {"name": "gpt", "lr": 0.1, "data": "/d", "colour": "red", "layers": [1, 2]}
    reordered = dict(reversed(list(as_dict.items())))
    from_model = ModelConfig(name="gpt", lr=0.1, data=Path("/d"))
    from_dataclass = DataConfig(name="gpt", lr=0.1, data=Path("/d"))
    fps = {fingerprint_config(c) for c in (as_dict, reordered, from_model, from_dataclass)}
    assert len(fps) == 1


def test_config_fingerprint_sees_values_and_nesting() -> None:
    base = fingerprint_config({"optim": {"lr": 0.1}, "seed": 1})
    assert fingerprint_config({"optim": {"lr": 0.2}, "seed": 1}) != base
    assert fingerprint_config({"optim": {"lr": 0.1}, "seed": "1"}) != base
    assert fingerprint_config({"optim": {"lr": 0.1}, "seed": 1, "extra": None}) != base
    # Stable across calls (and processes: nothing random goes in).
    assert fingerprint_config({"seed": 1, "optim": {"lr": 0.1}}) == base


def test_config_fingerprint_rejects_what_it_cannot_encode() -> None:
    with pytest.raises(TypeError, match="list"):
        fingerprint_config([1, 2])
    with pytest.raises(TypeError, match="object"):
        fingerprint_config({"x": object()})


def test_short() -> None:
    fp = hashlib.sha256(b"x").hexdigest()
    assert short(fp) == fp[:12]
    assert short(fp, 8) == fp[:8]
    with pytest.raises(ValueError):
        short(fp, 0)
