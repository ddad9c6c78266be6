"""Model outputs, remembered: an evaluation repeated on the same checkpoint is answered
from here instead of generating again.

A key is the SHA-256 of everything an output depends on: the checkpoint's fingerprint,
the task's name and version, the exact prompt and the generation settings (seed
included). A different checkpoint, a bumped task version or one changed setting is a
different key, so one model can never be scored on another's outputs. SQLite, in the
workspace (`eval_cache.db`), safe to share between processes.

A sampled output depends on nothing else: each row draws from a generator of its own,
seeded by `row_seed` from the task's seed, name, version and the prompt. So the batch a
row was generated in, and which rows were already cached, change nothing, and a cached
output is exactly what generating it again would give. CPU and CUDA generators draw
different streams from one seed, so the runner puts the device kind in a sampled task's
settings (`sampled_on`), and so in its key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.private_files import make_private_file

_SCHEMA = "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, output TEXT NOT NULL)"

# Sampled outputs stored before rows had seeds of their own depended on their batch; this
# entry in the key of every sampled output keeps them from being reused.
_SAMPLING_SCHEME = {"sampling": "row-seed"}


def output_key(
    checkpoint: str, task: str, version: int, prompt: str, settings: Mapping[str, Any]
) -> str:
    settings = dict(settings)
    if settings.get("top_k", 1) != 1:  # a sampled task (top_k 1 is greedy)
        settings |= _SAMPLING_SCHEME
    record = json.dumps([checkpoint, task, version, prompt, settings], sort_keys=True)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()


def row_seed(seed: int, task: str, version: int, prompt: str) -> int:
    """The seed one row samples with: a hash of the task's seed, name, version and the
    prompt, so it is the same in every process and on every machine (Python's own `hash`
    of a string changes per process). Below 2**63, so any generator takes it."""
    record = json.dumps([seed, task, version, prompt])
    digest = hashlib.sha256(record.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class OutputCache:
    def __init__(self, path: Path) -> None:
        make_private_file(path)  # cached model outputs: its owner's alone (WAL files follow)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, output FROM outputs WHERE key IN ({marks})"
                found.update(self._db.execute(query, chunk).fetchall())
        return found

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?)", list(items))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> OutputCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
