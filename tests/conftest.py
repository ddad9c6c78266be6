"""Test-wide settings: everything stays on this machine and inside a temporary folder.

Set before any test imports Prefect, MLflow or Hugging Face libraries, so none of them
writes to the home folder, sends telemetry or tries to reach a hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from playwright.sync_api import Browser

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="gpt2lab-tests-"))

os.environ.update(
    {
        "GPT2LAB_HOME": str(_SESSION_HOME / "workspace"),
        "PREFECT_HOME": str(_SESSION_HOME / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HOME": str(_SESSION_HOME / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": str(_SESSION_HOME / "tiktoken"),
        "TOKENIZERS_PARALLELISM": "false",
    }
)
for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

# GPT-2's original vocabulary files, shipped as test data (see tests/data/gpt2/README.md).
GPT2_VOCAB_DIR = Path(__file__).resolve().parent / "data" / "gpt2"
GPT2_VOCAB_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


@pytest.fixture(scope="session")
def gpt2_vocab_dir() -> Path:
    """The folder holding GPT-2's `encoder.json` and `vocab.bpe`, after checking that both
    are the released bytes (a changed file would make every tokenizer test meaningless)."""
    for name, expected in GPT2_VOCAB_SHA256.items():
        path = GPT2_VOCAB_DIR / name
        if not path.is_file():
            pytest.fail(f"{path} is missing: it ships with the repository", pytrace=False)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            pytest.fail(f"{path}: sha256 {digest}, expected {expected}", pytrace=False)
    return GPT2_VOCAB_DIR


# ---------------------------------------------------------------------------------------
# A real PostgreSQL server: the preference store's tests and the real-server test use it.

POSTGRES_URL_ENV = "GPT2LAB_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://gpt2lab:gpt2lab@127.0.0.1:5432/gpt2lab_test"
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# A server that is down refuses at once; a short timeout only bounds a host that is silent.
CONNECT_TIMEOUT_S = 3


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _why_unreachable(url: URL) -> str | None:
    """Why no connection to `url` can be made (None when one can)."""
    if url.host is not None and url.host not in LOOPBACK_HOSTS:  # None: a local socket
        return f"host {url.host!r} is not this machine, and tests never leave it"
    try:
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
        with engine.connect():
            pass
        engine.dispose()
    except (SQLAlchemyError, ImportError) as error:  # ImportError: no psycopg installed
        cause = getattr(error, "orig", None) or error
        return " ".join(str(cause).split())  # psycopg's message spans several lines
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The test server's URL, once it has answered, for a schema of this test session's own.

    Checked once per session. The schema keeps two test runs at once (two people on one
    machine, or pytest-xdist workers) from dropping each other's tables."""
    url = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    problem = _why_unreachable(url)
    if problem is not None:
        where = f"no PostgreSQL at {url.render_as_string(hide_password=True)}: {problem}"
        if _on_ci():
            pytest.fail(f"{where} (set {POSTGRES_URL_ENV}; .ci/run starts one)", pytrace=False)
        pytest.skip(f"{where}; CI runs this")
    schema = f"gpt2lab_tests_{os.getpid()}"
    server = create_engine(url, poolclass=NullPool)
    with server.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # pid reused
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    # libpq's `options` sets the search path on every connection made with this URL.
    yield url.update_query_dict({"options": f"-c search_path={schema}"}).render_as_string(
        hide_password=False
    )
    with server.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    server.dispose()


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with all tables created, to copy into each test's workspace
    (see tests/workspaces.py)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # Any query makes MLflow create and migrate the tables (and the Default experiment).
    MlflowClient(tracking_uri=f"sqlite:///{db.as_posix()}").search_experiments()
    return db


# -- A real browser -----------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; never `playwright install` (it downloads)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no outside look-ups
]


def no_browser(reason: str) -> NoReturn:
    """Skip here, fail on CI: a CI machine is supposed to have the browser."""
    message = f"no usable Chromium for the browser test: {reason}"
    if _on_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright. It resolves no name but 127.0.0.1
    (`--host-resolver-rules`) and makes no background requests, so nothing leaves the
    machine even if a page asked it to. Without a usable Chromium the test skips, saying
    why; on CI (`CI` set) it fails instead, so a broken browser set-up cannot pass
    unnoticed."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        no_browser(f"playwright is not installed ({error})")
    if not CHROMIUM.exists():
        no_browser(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as error:
            no_browser(f"{CHROMIUM} did not start: {' '.join(error.message.split())[:500]}")
        yield chromium
        chromium.close()


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the session's temporary home (workspace, Prefect and Hugging Face folders)."""
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
