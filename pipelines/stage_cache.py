"""Skipping end-to-end stages whose inputs and settings have not changed.

Each finished stage leaves a record: a key (a hash of the stage's settings, the
fingerprints of its inputs and of gpt2lab's code) and what it produced (paths,
fingerprints, its MLflow run). When a rerun computes the same key for a stage and the
outputs are still there, the stage is not run again. A stage that failed left no record,
so a rerun continues from it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipelines.tracking import CODE_PACKAGES
from tasks.fingerprint import fingerprint_file

# The code a stage's result depends on is the four packages (CODE_PACKAGES), wherever they
# are installed (a checkout or a wheel). README, docs, tests and benchmarks are not in it,
# so editing them reruns nothing.
# Source and the data files the code reads (templates, presets, shipped eval data).
CODE_SUFFIXES = frozenset({".py", ".toml", ".txt", ".jsonl", ".html", ".css", ".js"})


class StageRecord(BaseModel):
    stage: str
    key: str
    run_id: str  # the MLflow run that did the work
    outputs: dict[str, Any]  # what later stages need: paths, fingerprints, figures
    paths: list[Path] = []  # files or folders that must still exist for the record to count


def stage_key(stage: str, settings: BaseModel | dict, inputs: dict[str, str]) -> str:
    """A hash of what decides the stage's result: its settings, its inputs' fingerprints
    and the code (see `code_fingerprint`)."""
    if isinstance(settings, BaseModel):
        settings = settings.model_dump(mode="json")
    payload = {"stage": stage, "settings": settings, "inputs": inputs, "code": code_fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over the source files of the four packages: their paths and contents.

    Not the git commit: a commit (or a dirty checkout) also changes when only README, docs
    or tests change, and an installed wheel has no commit at all. Cached per process: the
    code a process runs is the code it imported at start.
    """
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent  # type: ignore[arg-type]
        for path in sorted(_code_files(root)):
            relative = f"{package}/{path.relative_to(root).as_posix()}"
            digest.update(f"{relative}\0{fingerprint_file(path)}\n".encode())
    return digest.hexdigest()


def _code_files(root: Path) -> list[Path]:
    """The source and data files under `root`: no caches, no hidden files."""
    return [
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix in CODE_SUFFIXES
        and not any(part.startswith((".", "__pycache__")) for part in path.relative_to(root).parts)
    ]


class StageCache:
    """The records of one end-to-end run folder, one JSON file per stage."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def get(self, stage: str, key: str) -> StageRecord | None:
        """The stage's record if it was made with `key` and its outputs are still there."""
        path = self._path(stage)
        if not path.exists():
            return None
        record = StageRecord.model_validate_json(path.read_text())
        if record.key != key or not all(Path(p).exists() for p in record.paths):
            return None
        return record

    def put(self, record: StageRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(record.stage)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(record.model_dump_json(indent=2))
        temporary.replace(path)  # a crash never leaves half a record

    def forget(self, stage: str) -> None:
        self._path(stage).unlink(missing_ok=True)

    def start(self, stage: str, key: str) -> None:
        """Note that `stage` started with `key`: its output folder holds work for that key."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stage}.started").write_text(key)

    def started_with(self, stage: str) -> str | None:
        """The key `stage` last started with, if any."""
        path = self.folder / f"{stage}.started"
        return path.read_text().strip() if path.exists() else None
