"""Test-wide settings: everything stays on this machine and inside a temporary folder.

Set before any test imports Prefect, MLflow or Hugging Face libraries, so none of them
writes to the home folder, sends telemetry or tries to reach a hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

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

# GPT-2's original vocabulary files, beside the checkout (see ../shared/gpt2/README.md).
SHARED_GPT2_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "gpt2"


@pytest.fixture(scope="session")
def gpt2_vocab_dir() -> Path:
    """The folder holding GPT-2's `encoder.json` and `vocab.bpe`; skips where it is absent."""
    if not (SHARED_GPT2_DIR / "encoder.json").is_file():
        pytest.skip(f"GPT-2 vocabulary files not found at {SHARED_GPT2_DIR} (../shared/gpt2)")
    return SHARED_GPT2_DIR


def pytest_sessionfinish(session, exitstatus) -> None:
    """Remove the session's temporary home (workspace, Prefect and Hugging Face folders)."""
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
