"""A workspace with a ready MLflow store, shared by the tests of one module.

Report tests only read what runs recorded, so one module fills a store once and every test
in it reads that store. (tests/pipelines/conftest.py has the per-test version for flows.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workspaces import fresh_workspace


@pytest.fixture(scope="module")
def module_workspace(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path
) -> Iterator[Path]:
    """A fresh `GPT2LAB_HOME` for one test module, its `mlflow.db` already migrated."""
    with fresh_workspace(tmp_path_factory.mktemp("report-workspace"), mlflow_template_db) as home:
        yield home
