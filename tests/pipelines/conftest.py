"""Fixtures for flow and tracking tests: a fresh workspace with a ready MLflow store, and Prefect.

Both MLflow and Prefect have a slow first start (MLflow creates its tables, Prefect starts a
local API server), so each is paid once per session and shared:

- `mlflow_template_db`: one migrated MLflow SQLite file per session; `workspace` copies it
  into every test's own workspace (a file copy takes milliseconds, a migration seconds).
- `prefect_harness`: one local Prefect API with a temporary database for the whole session,
  started only if some test asks for it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with all tables created, to copy into each test's workspace."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # Any query makes MLflow create and migrate the tables (and the Default experiment).
    MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}").search_experiments()
    return db


@pytest.fixture
def workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template_db: Path
) -> Iterator[Path]:
    """A fresh `GPT2LAB_HOME` for one test, its `mlflow.db` already migrated."""
    import mlflow

    home = tmp_path / "workspace"
    home.mkdir()
    shutil.copyfile(mlflow_template_db, home / "mlflow.db")
    monkeypatch.setenv("GPT2LAB_HOME", str(home))
    # The tracking URI must follow this test's workspace. (mlflow.set_tracking_uri also writes
    # this variable, so an earlier test may have left one behind.)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Run from an empty folder: anything written relative to the current directory (MLflow's
    # own ./mlflow.db or ./mlruns defaults) is a bug, caught below.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield home
    assert not list(cwd.iterdir()), f"files written outside the workspace: {list(cwd.iterdir())}"
    # A failed test may leave a run open in this thread; close it so the next test starts clean.
    while mlflow.active_run() is not None:
        mlflow.end_run()
    # Forget this test's store: back to "whatever MLFLOW_TRACKING_URI says", which monkeypatch
    # then restores.
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Run flows against a temporary local Prefect API (started once, ~10 s).

    Only tests that request this fixture pay for it. To share it with other test folders, move
    it to tests/conftest.py.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# The small tokens folder the training tests use (pydoc's help texts, a 512-token BPE).
from tests.tasks.train.conftest import tokens_dir  # noqa: E402, F401
