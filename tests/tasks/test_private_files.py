"""Every database file the project makes is readable by its owner only: the corpus
store, the eval output cache and the workspace's MLflow store, with their WAL files."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from tasks.corpus.store import CorpusStore
from tasks.evals.output_cache import OutputCache
from tasks.private_files import make_private_file, private_secret


def _modes(folder: Path, prefix: str) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in folder.iterdir()
        if p.name.startswith(prefix)
    }


def test_the_corpus_store_and_the_eval_cache_are_private(tmp_path):
    store = CorpusStore(tmp_path / "corpus")
    modes = _modes(tmp_path / "corpus", "")
    store.close()
    assert modes and set(modes.values()) == {0o600}, modes
    with OutputCache(tmp_path / "eval_cache.db") as cache:
        cache.put_many([("key", "value")])
        modes = _modes(tmp_path, "eval_cache.db")
    assert "eval_cache.db-wal" in modes and set(modes.values()) == {0o600}, modes


def test_a_database_file_made_private_keeps_its_wal_files_private(tmp_path):
    path = make_private_file(tmp_path / "mlflow.db")
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    modes = _modes(tmp_path, "mlflow.db")
    db.close()
    assert {"mlflow.db", "mlflow.db-wal", "mlflow.db-shm"} <= modes.keys()
    assert set(modes.values()) == {0o600}, modes
    # An older, readable file is tightened when opened again.
    path.chmod(0o644)
    make_private_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_workspace_mlflow_store_is_made_private_before_mlflow_opens_it(tmp_path, monkeypatch):
    from pipelines.workspace import mlflow_db_path, workspace_mlflow_uri

    monkeypatch.setenv("GPT2LAB_HOME", str(tmp_path / "ws"))
    assert workspace_mlflow_uri().endswith("/ws/mlflow.db")
    assert stat.S_IMODE(mlflow_db_path().stat().st_mode) == 0o600


def test_a_private_secret_is_made_once_and_kept(tmp_path):
    first = private_secret(tmp_path / "key")
    assert private_secret(tmp_path / "key") == first and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
