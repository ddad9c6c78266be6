"""A workspace with a ready MLflow store, shared by the tests of one module.

Report tests only read what runs recorded, so one module fills a store once and every test
in it reads that store. (tests/pipelines/conftest.py has the per-test version for flows.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with all tables created (a migration takes seconds; a copy
    takes milliseconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}").search_experiments()
    return db


@pytest.fixture(scope="module")
def module_workspace(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path
) -> Iterator[Path]:
    """A fresh `GPT2LAB_HOME` for one test module, its `mlflow.db` already migrated."""
    import mlflow

    root = tmp_path_factory.mktemp("report-workspace")
    home, cwd = root / "workspace", root / "cwd"
    home.mkdir()
    cwd.mkdir()
    shutil.copyfile(mlflow_template_db, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPT2LAB_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        # Anything written relative to the current folder (MLflow's ./mlruns) is a bug.
        patch.chdir(cwd)
        yield home
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
    assert not list(cwd.iterdir()), f"files written outside the workspace: {list(cwd.iterdir())}"
