"""The workspace folder, its paths, and the environment defaults set before Prefect/MLflow."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pipelines import workspace as ws

REPO_ROOT = Path(__file__).resolve().parents[2]

# When other tests have imported prefect already, configure_environment() rightly warns that
# setting PREFECT_HOME is too late; that warning has its own test below (pytest.warns and
# recwarn see warnings whatever this filter says).
pytestmark = pytest.mark.filterwarnings("ignore:configure_environment:RuntimeWarning")

# Everything configure_environment may set, so each test can clear them and monkeypatch puts
# the session's values back afterwards.
MANAGED = (
    "PREFECT_HOME",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "DO_NOT_TRACK",
    "MLFLOW_DISABLE_TELEMETRY",
    "TOKENIZERS_PARALLELISM",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No gpt2lab-related variables set; GPT2LAB_HOME points into tmp_path."""
    for name in MANAGED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "ws"
    monkeypatch.setenv("GPT2LAB_HOME", str(home))
    return home


def test_default_workspace_is_absolute_and_created(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GPT2LAB_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    path = ws.workspace_dir()
    assert path == (tmp_path / "workspace").resolve()
    assert path.is_absolute() and path.is_dir()


def test_gpt2lab_home_relative_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPT2LAB_HOME", "runs/../my-ws")
    path = ws.workspace_dir()
    assert path == (tmp_path / "my-ws").resolve()
    assert path.is_dir()


def test_subfolders_and_files_live_in_workspace(clean_env: Path) -> None:
    home = clean_env.resolve()
    for helper, name in [
        (ws.corpus_dir, "corpus"),
        (ws.tokens_dir, "tokens"),
        (ws.checkpoints_dir, "checkpoints"),
        (ws.mlartifacts_dir, "mlartifacts"),
    ]:
        assert helper() == home / name
        assert (home / name).is_dir()
    assert ws.mlflow_db_path() == home / "mlflow.db"
    assert ws.preferences_db_path() == home / "preferences.db"
    assert ws.prefect_home_dir() == home / "prefect"


def test_tracking_uri_is_absolute_sqlite_with_four_slashes(clean_env: Path) -> None:
    uri = ws.mlflow_tracking_uri()
    assert uri.startswith("sqlite:////")
    path = Path(uri.removeprefix("sqlite:///"))
    assert path.is_absolute()
    assert path == clean_env.resolve() / "mlflow.db"
    assert ws.uses_workspace_store()


def test_user_tracking_uri_is_respected(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert ws.mlflow_tracking_uri() == "http://127.0.0.1:5000"
    assert not ws.uses_workspace_store()
    ws.configure_environment()
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"


def test_configure_environment_fills_defaults(clean_env: Path) -> None:
    ws.configure_environment()
    home = clean_env.resolve()
    assert os.environ["PREFECT_HOME"] == str(home / "prefect")
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"
    assert os.environ["DO_NOT_TRACK"] == "true"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{home}/mlflow.db"
    # The local ephemeral Prefect API stays the default: no API URL is invented.
    assert "PREFECT_API_URL" not in os.environ


def test_configure_environment_keeps_user_values(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {
        "PREFECT_HOME": "/somewhere/prefect",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "30",
        "DO_NOT_TRACK": "false",
        "MLFLOW_DISABLE_TELEMETRY": "false",
        "TOKENIZERS_PARALLELISM": "true",
        "MLFLOW_TRACKING_URI": "postgresql://db/mlflow",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
    }
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    ws.configure_environment()
    ws.configure_environment()  # twice is harmless
    assert {name: os.environ[name] for name in user} == user


def test_configure_environment_warns_when_prefect_was_imported_first(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend prefect is imported (it may or may not really be, depending on test order).
    monkeypatch.setitem(sys.modules, "prefect", sys.modules.get("prefect", types.ModuleType("p")))
    with pytest.warns(RuntimeWarning, match="before importing prefect"):
        ws.configure_environment()


def test_no_warning_with_a_prefect_server(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    monkeypatch.setitem(sys.modules, "prefect", sys.modules.get("prefect", types.ModuleType("p")))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    ws.configure_environment()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


PREFECT_FLOW = """
from pipelines.workspace import configure_environment

configure_environment()
from prefect import flow


@flow
def one() -> int:
    return 1


assert one() == 1
"""


@pytest.mark.slow
def test_prefects_local_database_is_private_and_prefect_still_runs_flows_in_it(tmp_path):
    """Prefect makes its SQLite file itself; gpt2lab makes it first, empty and 0600, and a
    real flow run (Prefect's temporary server migrating that file) must still work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["GPT2LAB_HOME"] = str(tmp_path / "ws")
    subprocess.run(
        [sys.executable, "-c", PREFECT_FLOW],
        env=env,
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    database = tmp_path / "ws" / "prefect" / "prefect.db"
    assert database.stat().st_size > 0  # Prefect wrote its tables and the flow run there
    for each in database.parent.glob("prefect.db*"):  # -wal and -shm too, while they exist
        assert stat.S_IMODE(each.stat().st_mode) == 0o600, each
