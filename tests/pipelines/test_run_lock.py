"""One run at a time per output folder: a second run refuses at once, naming the first;
a lock left by a killed process is taken over; a new workspace's MLflow store is made
once even when two processes start together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.run_lock import FolderInUseError, folder_lock, lock_path
from tasks.encode.token_shards import read_meta
from tests.tasks.encode.conftest import save_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pipelines.run_lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_refuses_naming_the_first_and_a_dead_holders_lock_is_taken(tmp_path):
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(FolderInUseError) as error, folder_lock(folder):
            pass
        message = str(error.value)
        assert message.startswith(f"{folder} is being written by another run (pid {holder.pid}")
        assert "started 20" in message and "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel lets the lock go
        holder.wait()
    assert json.loads(lock_path(folder).read_text())["pid"] == holder.pid  # the file stays
    with folder_lock(folder), folder_lock(folder):  # taken over; nested is fine
        assert json.loads(lock_path(folder).read_text())["pid"] == os.getpid()
    assert not folder.exists()  # the lock lives beside the folder, never in it


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    from benchmarks.varied_text import varied_documents

    folder = tmp_path / "corpus"
    save_dataset(folder, varied_documents(120_000, seed=5, doc_bytes=2_000))
    return folder


def _encode(source: Path, out: Path, vocab: Path, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines.cli", "encode", "--corpus", str(source)]
    command += ["--out", str(out), "--tokenizer", str(vocab), "--val-fraction", "0.1"]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_encodes_into_one_folder_at_once_one_refuses_the_other_is_whole(
    small_corpus, gpt2_vocab_dir, tmp_path
):
    env = {**os.environ, "GPT2LAB_HOME": str(tmp_path / "workspace")}  # a new workspace
    for name in [n for n in env if n.startswith(("PREFECT_", "MLFLOW_"))]:
        del env[name]
    out = tmp_path / "tokens"
    first, second = (_encode(small_corpus, out, gpt2_vocab_dir, env) for _ in range(2))
    outputs = [process.communicate(timeout=600)[0] for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    assert codes == [0, 2], outputs
    refused = next(o for o, p in zip(outputs, (first, second), strict=True) if p.returncode)
    assert "is being written by another run (pid" in refused
    assert "gpt2lab encode --corpus" in refused  # the holder, named
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 1

    alone = _encode(small_corpus, tmp_path / "alone", gpt2_vocab_dir, env)
    assert alone.wait(timeout=600) == 0, alone.communicate()[0]
    assert read_meta(out).fingerprint == read_meta(tmp_path / "alone").fingerprint


SETUP_STORE = """
from pipelines.workspace import configure_environment
configure_environment()
from pipelines.tracking import ensure_experiment
print(ensure_experiment("both"))
"""


def test_two_processes_making_a_new_workspace_store_at_once_both_succeed(tmp_path):
    env = {**os.environ, "GPT2LAB_HOME": str(tmp_path / "workspace")}
    for name in [n for n in env if n.startswith(("PREFECT_", "MLFLOW_"))]:
        del env[name]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SETUP_STORE],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    results = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-2000:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment, the same id
