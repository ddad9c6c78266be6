"""What a person sees when a flow fails: Prefect's log lines and the one-line error, no
traceback (unless --debug) and no complaint about logs that could not be sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tasks.encode.conftest import save_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


def _encode(args: list[str], tmp_path: Path, gpt2_vocab_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["GPT2LAB_HOME"] = str(tmp_path / "workspace")
    command = [sys.executable, "-m", "pipelines.cli", *args, "encode"]
    command += ["--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "tokens")]
    command += ["--tokenizer", str(gpt2_vocab_dir), "--val-fraction", "0.01"]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_failing_flow_ends_in_one_error_line_and_no_traceback(tmp_path, gpt2_vocab_dir):
    save_dataset(tmp_path / "corpus", [f"document {n} " * 40 for n in range(20)])
    quiet = _encode([], tmp_path, gpt2_vocab_dir)
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 2
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: corpus ") and "give --val-fraction 0.1 or more" in last
    assert "Traceback" not in output
    assert "Error logging to API" not in output

    loud = _encode(["--debug"], tmp_path, gpt2_vocab_dir)
    assert loud.returncode == 2 and "Traceback" in loud.stdout + loud.stderr
