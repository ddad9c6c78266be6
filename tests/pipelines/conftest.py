"""Fixtures for flow and tracking tests: a fresh workspace with a ready MLflow store, and Prefect.

Both MLflow and Prefect have a slow first start (MLflow creates its tables, Prefect starts a
local API server), so each is paid once per session and shared:

- `mlflow_template_db` (tests/conftest.py): one migrated MLflow SQLite file per session;
  `workspace` copies it into every test's own workspace (a file copy takes milliseconds, a
  migration seconds; see tests/workspaces.py).
- `prefect_harness`: one local Prefect API with a temporary database for the whole session,
  started only if some test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.failure_hooks import WEBHOOK_ENV
from tests.webhook import Receiver
from tests.workspaces import fresh_workspace


@pytest.fixture
def workspace(tmp_path: Path, mlflow_template_db: Path) -> Iterator[Path]:
    """A fresh `GPT2LAB_HOME` for one test, its `mlflow.db` already migrated."""
    with fresh_workspace(tmp_path, mlflow_template_db) as home:
        yield home


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The failure webhook (`GPT2LAB_FAILURE_WEBHOOK`), on 127.0.0.1: what it received."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    webhook = Receiver()
    monkeypatch.setenv(WEBHOOK_ENV, webhook.url)
    yield webhook
    webhook.close()


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
