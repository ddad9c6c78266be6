"""The workspace: the one folder everything a run writes lives under.

Default `./workspace`, or wherever `GPT2LAB_HOME` points. Layout:

    <workspace>/
        corpus/          cleaned, deduplicated datasets
        tokens/          uint16 token shards
        checkpoints/     model weights (safetensors)
        mlartifacts/     MLflow artifacts, one folder per experiment
        mlflow.db        MLflow runs, params, metrics, tags (SQLite)
        preferences.db   human preference votes (SQLite)
        eval_cache.db    model outputs of eval tasks (evals/: their results)
        contamination/   8-gram overlap of eval tasks with a corpus
        registered-models/  models:/NAME@ALIAS downloaded from MLflow
        prefect/         Prefect's home: its local database and settings

This module only computes paths and environment variables; it imports neither Prefect nor
MLflow, so the command line can call `configure_environment()` before either is imported.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from tasks.private_files import make_private_file

HOME_ENV = "GPT2LAB_HOME"
DEFAULT_HOME = "workspace"


def workspace_dir() -> Path:
    """The workspace folder as an absolute path, created if missing.

    Made absolute once here so that a later `chdir` (Prefect workers, notebooks) cannot send
    half of a run's files somewhere else.
    """
    raw = os.environ.get(HOME_ENV) or DEFAULT_HOME
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _subfolder(name: str) -> Path:
    path = workspace_dir() / name
    path.mkdir(exist_ok=True)
    return path


def corpus_dir() -> Path:
    """`<workspace>/corpus/`: cleaned, deduplicated datasets (created if missing)."""
    return _subfolder("corpus")


def tokens_dir() -> Path:
    """`<workspace>/tokens/`: uint16 token shards (created if missing)."""
    return _subfolder("tokens")


def checkpoints_dir() -> Path:
    """`<workspace>/checkpoints/`: model weights (created if missing)."""
    return _subfolder("checkpoints")


def mlartifacts_dir() -> Path:
    """`<workspace>/mlartifacts/`: MLflow artifacts when tracking locally (created if missing)."""
    return _subfolder("mlartifacts")


def prefect_home_dir() -> Path:
    """`<workspace>/prefect/`: the default `PREFECT_HOME` (not created; Prefect makes it)."""
    return workspace_dir() / "prefect"


def mlflow_db_path() -> Path:
    """`<workspace>/mlflow.db`: the local MLflow store (MLflow creates the file on first use)."""
    return workspace_dir() / "mlflow.db"


def preferences_db_path() -> Path:
    """`<workspace>/preferences.db`: human preference votes (created by its own module)."""
    return workspace_dir() / "preferences.db"


def workspace_mlflow_uri() -> str:
    """The SQLite URI of the workspace's own MLflow store.

    SQLAlchemy reads `sqlite:///` + path, so an absolute POSIX path gives four slashes
    (`sqlite:////abs/path/mlflow.db`); three slashes would mean "relative to the current
    directory", which silently splits runs across folders.

    The file is made here, readable by its owner only, before MLflow opens it (MLflow
    would create it with the default mode; its -wal/-shm files follow the file's mode).
    """
    return f"sqlite:///{make_private_file(mlflow_db_path()).as_posix()}"


def mlflow_tracking_uri() -> str:
    """Where MLflow runs go: `MLFLOW_TRACKING_URI` if set, else the workspace SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or workspace_mlflow_uri()


def uses_workspace_store() -> bool:
    """True when MLflow tracks into the workspace's SQLite file (not a server or another db).

    Then we also choose where artifacts go (`<workspace>/mlartifacts/`); a tracking server
    decides that for itself.
    """
    return mlflow_tracking_uri() == workspace_mlflow_uri()


def _environment_defaults() -> dict[str, str]:
    """Variables that keep Prefect, MLflow and tokenizers local and quiet (see STACK-NOTES)."""
    return {
        # Prefect keeps its local database and settings here instead of ~/.prefect.
        "PREFECT_HOME": str(prefect_home_dir()),
        # Without this the local Prefect server tries to send telemetry and logs errors offline.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The local (ephemeral) Prefect API can take longer than the 20 s default to start on a
        # small, busy machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        # MLflow honours only "true" here ("1" is ignored).
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Hugging Face tokenizers warn (and can deadlock) when a process forks after using
        # their thread pool; our data loading may fork.
        "TOKENIZERS_PARALLELISM": "false",
        # Exported so that child processes (workers, `mlflow ui`, scripts) use the same store.
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri(),
    }


def configure_environment() -> None:
    """Set gpt2lab's environment defaults, keeping every value the user already set.

    Call it once, first thing, in every CLI command and flow entry point, BEFORE importing
    Prefect or MLflow: Prefect reads its settings (`PREFECT_HOME` among them) once, when it is
    first imported, so setting them afterwards has no effect on the running process.

    What it sets, only where unset (an empty value counts as unset):
    `PREFECT_HOME=<workspace>/prefect`, `PREFECT_SERVER_ANALYTICS_ENABLED=false`,
    `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120`, `DO_NOT_TRACK=true`,
    `MLFLOW_DISABLE_TELEMETRY=true`, `TOKENIZERS_PARALLELISM=false`, and `MLFLOW_TRACKING_URI`
    (the absolute SQLite URI of `<workspace>/mlflow.db`).

    `PREFECT_API_URL` is left alone: unset means Prefect's local ephemeral API; set it to use a
    real `prefect server`. Calling this twice is harmless.
    """
    changed: list[str] = []
    for name, value in _environment_defaults().items():
        if not os.environ.get(name):
            os.environ[name] = value
            changed.append(name)

    # The one mistake that is easy to make and hard to spot: Prefect was imported first, so it
    # already settled on ~/.prefect. That matters for the local (ephemeral) API, whose database
    # lives in PREFECT_HOME; with a real server (PREFECT_API_URL set) the data lives there.
    prefect_too_early = "prefect" in sys.modules and "PREFECT_HOME" in changed
    if prefect_too_early and not os.environ.get("PREFECT_API_URL"):
        warnings.warn(
            "configure_environment() ran after prefect was imported, so Prefect keeps its "
            "default home (~/.prefect), not the workspace; call it before importing prefect",
            RuntimeWarning,
            stacklevel=2,
        )
    if prefect_uses_local_database():
        # Prefect's local database holds every flow run's parameters and logs: its owner's
        # alone, like the project's other SQLite files.
        make_private_file(Path(os.environ["PREFECT_HOME"]) / PREFECT_DB_NAME)


PREFECT_DB_NAME = "prefect.db"  # Prefect's default SQLite file in PREFECT_HOME


def prefect_uses_local_database() -> bool:
    """Whether Prefect keeps its data in `$PREFECT_HOME/prefect.db`: no server to talk to
    (`PREFECT_API_URL`) and no other database named."""
    named = ("PREFECT_API_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
    named += ("PREFECT_API_DATABASE_CONNECTION_URL",)
    return bool(os.environ.get("PREFECT_HOME")) and not any(os.environ.get(n) for n in named)
