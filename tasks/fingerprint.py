"""Content fingerprints: short, stable names for "exactly this data" and "exactly this config".

A fingerprint is the SHA-256 of the content, written as 64 hex characters. Two things with the
same fingerprint hold the same bytes, wherever they live and whenever they were made. The
pipeline uses fingerprints for two jobs:

- **lineage**: every MLflow run is tagged with the fingerprints of the corpus, tokenizer and
  checkpoint it used, so a metric leads back to its exact data;
- **caching**: a step whose input fingerprints (and config fingerprint) have not changed is not
  redone.

This module is plain Python (hashlib + json) and imports nothing else of ours, so every layer,
`model/` included, may use it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

# Read files in 1 MiB pieces: big enough to be fast, small enough that a multi-GB token shard
# never has to fit in memory.
_CHUNK_BYTES = 1 << 20


def fingerprint_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of one file's bytes, as 64 hex characters.

    It is the plain SHA-256 of the content, so `sha256sum FILE` on the command line gives the
    same answer. The file's name and location are not part of it.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            # Streamed: memory use stays at one chunk whatever the file size.
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot fingerprint {path}: no such file") from None
    return digest.hexdigest()


def fingerprint_folder(path: str | os.PathLike[str]) -> str:
    """SHA-256 over every file in a folder tree: their relative paths and their contents.

    What counts:
    - each file's path relative to `path` (with `/` separators on every OS) and its content
      hash, so renaming or moving a file changes the fingerprint, as does editing it;
    - files in sub-folders, at any depth.

    What does not count, so that the same data gives the same fingerprint anywhere:
    - where the folder lives, file times and permissions, the order files were written in;
    - empty folders (only files carry data);
    - anything whose name, or whose parent folder's name, starts with a dot (`.git/`,
      `.DS_Store`, editors' swap files, `.tmp-*` files a half-finished atomic write left).

    Symbolic links to files are followed (their target's content counts); links to folders are
    not descended into, which avoids loops.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {root}: no such folder")
    digest = hashlib.sha256()
    for relative in _visible_files(root):
        # One entry per file: "relative/path\0<64 hex>\n". Paths cannot contain "\0" and the hash
        # has a fixed length, so two different trees can never produce the same byte stream.
        digest.update(relative.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
        digest.update(fingerprint_file(root / relative).encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()


def _visible_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files under `root`, skipping dot-names, sorted."""
    found: list[str] = []
    for folder, subfolders, files in os.walk(root):
        # Pruning `subfolders` in place stops os.walk from descending into hidden folders.
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        base = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith("."):
                found.append((base / name).as_posix())
    # Sort the full paths (not folder by folder) so the order is the same on every OS.
    return sorted(found)


def fingerprint_path(path: str | os.PathLike[str]) -> str:
    """Fingerprint a file or a folder, whichever `path` is.

    Raises FileNotFoundError with a one-line message naming the path when nothing is there.
    """
    path = Path(path)
    if path.is_file():
        return fingerprint_file(path)
    if path.is_dir():
        return fingerprint_folder(path)
    raise FileNotFoundError(f"cannot fingerprint {path}: no such file or folder")


def fingerprint_config(config: Any) -> str:
    """SHA-256 of a config's canonical JSON: keys sorted, no spaces, UTF-8.

    Accepts a mapping, a pydantic model or a dataclass (nested ones too). Only the values count,
    not the type: a pydantic model and a dict with the same fields get the same fingerprint, so
    include the flow's name in a cache key when two flows could share a config shape.
    """
    text = json.dumps(
        _plain(config),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_json_default,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(config: Any) -> Any:
    """The top-level config as a JSON-ready dict, or a TypeError naming what it got."""
    if isinstance(config, Mapping):
        return dict(config)
    if _is_pydantic_model(config) or _is_dataclass_instance(config):
        return _json_default(config)
    raise TypeError(
        f"fingerprint_config expects a mapping, pydantic model or dataclass, "
        f"not {type(config).__name__}"
    )


def _is_pydantic_model(value: Any) -> bool:
    # Duck-typed, so this module needs no pydantic import; pydantic v2 models have both.
    return hasattr(value, "model_dump") and hasattr(type(value), "model_fields")


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _json_default(value: Any) -> Any:
    """Turn the few non-JSON types configs hold into stable JSON values."""
    if _is_pydantic_model(value):
        # mode="json" turns paths, enums and dates into strings the way pydantic serializes them.
        return value.model_dump(mode="json")
    if _is_dataclass_instance(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, PurePath):
        return value.as_posix()  # the same string on every OS
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)  # sets have no order; sort for a stable answer
    if isinstance(value, _dt.date | _dt.datetime | _dt.time):
        return value.isoformat()
    raise TypeError(f"fingerprint_config cannot encode a value of type {type(value).__name__}")


def short(fingerprint: str, n: int = 12) -> str:
    """The first `n` hex characters: enough to tell runs apart in names and logs.

    Twelve hex characters are 48 bits; a clash needs about 16 million distinct items. Keep the
    full fingerprint in tags and cache keys, where it must be exact.
    """
    if n < 1:
        raise ValueError(f"short fingerprint length must be at least 1, got {n}")
    return fingerprint[:n]


def model_fingerprint(model: str) -> str:
    """What caches and lineage know a model by: the SHA-256 of its files, or its hub id
    when it is not a local folder."""
    return fingerprint_path(model) if Path(model).exists() else f"hub:{model}"
