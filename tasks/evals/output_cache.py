"""Model outputs, remembered: an evaluation repeated on the same checkpoint is answered
from here instead of generating again.

A key is the SHA-256 of everything an output depends on: the checkpoint's fingerprint,
the task's name and version, the exact prompt and the generation settings (seed
included). A different checkpoint, a bumped task version or one changed setting is a
different key, so one model can never be scored on another's outputs. SQLite, in the
workspace (`eval_cache.db`), safe to share between processes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_SCHEMA = "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, output TEXT NOT NULL)"


def output_key(
    checkpoint: str, task: str, version: int, prompt: str, settings: Mapping[str, Any]
) -> str:
    record = json.dumps([checkpoint, task, version, prompt, dict(settings)], sort_keys=True)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()


class OutputCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
