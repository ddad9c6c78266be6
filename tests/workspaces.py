"""A fresh gpt2lab workspace for tests: its own `GPT2LAB_HOME`, its MLflow store ready.

MLflow creates and migrates its tables on a store's first use, which takes seconds; a copy
of an already migrated SQLite file takes milliseconds. So `mlflow_template_db` (in
tests/conftest.py) migrates one store per session, and each workspace starts as a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def fresh_workspace(root: Path, template_db: Path) -> Iterator[Path]:
    """`root/workspace` as `GPT2LAB_HOME`, its `mlflow.db` a copy of `template_db`, while
    the block runs in the empty folder `root/cwd`; yields the workspace.

    Anything written relative to the current folder (MLflow's own ./mlflow.db or ./mlruns
    defaults) is a bug: the folder must still be empty at the end."""
    import mlflow

    home, cwd = root / "workspace", root / "cwd"
    home.mkdir()
    cwd.mkdir()
    shutil.copyfile(template_db, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPT2LAB_HOME", str(home))
        # The tracking URI must follow this workspace (mlflow.set_tracking_uri also writes
        # this variable, so an earlier test may have left one behind).
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(cwd)
        try:
            yield home
        finally:
            # A failed test may leave a run open in this thread; close it so the next
            # starts clean, and forget this store.
            while mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow.set_tracking_uri(None)
    assert not list(cwd.iterdir()), f"files written outside the workspace: {list(cwd.iterdir())}"
