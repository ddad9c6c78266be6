"""Ctrl-C at a terminal during pretraining: the command ends within seconds with one
line saying where it stopped and how to resume, its MLflow runs end KILLED, and the same
command resumes from the saved step.

The command runs in a pseudo-terminal of its own, and Ctrl-C is the byte a keyboard sends
(0x03): the terminal turns it into SIGINT for the whole foreground process group, exactly
as at a real terminal. Prefect's local API, in a session of its own, must not die of it.
"""

from __future__ import annotations

import os
import pty
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.terminal import exit_code, kill, read_terminal

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
name = "interrupted"
miniweb_articles = 30
[encode]
vocab_size = 600
[pretrain]
max_steps = 100000
eval_interval = 1000
checkpoint_interval = 10
micro_batch = 4
batch_tokens = 256
context = 64
[evaluate]
tasks = ["wikitext2-perplexity"]
limit = 1
[preferences]
n = 3
max_new_tokens = 8
"""
EXIT_WITHIN_S = 10.0


def _start(workdir: Path, env: dict) -> tuple[int, int]:
    """`gpt2lab run --config run.toml` in a new pseudo-terminal: (pid, terminal fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its own session, the pty its controlling terminal
        os.chdir(workdir)
        command = [sys.executable, "-m", "pipelines.cli", "run", "--config", "run.toml"]
        os.execve(sys.executable, command, env)
    return pid, fd


@pytest.mark.slow
def test_ctrl_c_during_pretraining_stops_in_seconds_with_one_line_and_resumes(tmp_path):
    (tmp_path / "run.toml").write_text(CONFIG)
    workspace = tmp_path / "workspace"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(GPT2LAB_HOME=str(workspace), PYTHONPATH=str(REPO_ROOT), COLUMNS="200")
    checkpoints = workspace / "end-to-end" / "interrupted" / "pretrain" / "checkpoints"

    pid, fd = _start(tmp_path, env)
    code = None
    try:
        output = b""
        deadline = time.monotonic() + 600
        while not any(checkpoints.glob("step-*/training_state.pt")) and time.monotonic() < deadline:
            output += read_terminal(fd, time.monotonic() + 1)  # keep the terminal drained
        assert any(checkpoints.glob("step-*")), output.decode(errors="replace")[-3000:]
        os.write(fd, b"\x03")  # Ctrl-C
        pressed = time.monotonic()
        output += read_terminal(fd, pressed + EXIT_WITHIN_S)
        code = exit_code(pid, EXIT_WITHIN_S - (time.monotonic() - pressed))
        took = time.monotonic() - pressed
    finally:
        if code is None:  # still running (or never reaped): end it
            kill(pid)
        os.close(fd)
    text = output.decode(errors="replace")
    assert code == 130, (code, text[-3000:])
    assert took < EXIT_WITHIN_S
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert last.startswith("stopped at step "), text[-3000:]
    assert last.endswith(" of pretrain; `gpt2lab run --config run.toml` resumes")
    assert "Traceback" not in text[text.index("\x03") if "\x03" in text else 0 :]
    step = int(last.removeprefix("stopped at step ").split()[0])

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs(client.search_experiments()[0].experiment_id)
    statuses = {run.info.run_name: run.info.status for run in runs}
    assert "FINISHED" not in {statuses.get("interrupted"), statuses.get("pretrain")}, statuses
    assert statuses.get("interrupted") == "KILLED", statuses

    # The same command again resumes from that step, and says so.
    pid, fd = _start(tmp_path, env)
    try:
        resumed = b""
        deadline = time.monotonic() + 600
        while b"resuming" not in resumed and time.monotonic() < deadline:
            resumed += read_terminal(fd, time.monotonic() + 1)
    finally:
        kill(pid)
        os.close(fd)
    assert f"from step-{step:06d}".encode() in resumed or f"step-{step}".encode() in resumed, (
        resumed.decode(errors="replace")[-3000:]
    )


@pytest.mark.slow
def test_ctrl_c_while_the_corpus_is_fetched_ends_the_command_in_seconds(tmp_path):
    """Outside training the work runs in worker threads that Ctrl-C does not stop; every
    write there is crash-safe, so the command ends a few seconds later all the same."""
    from pipelines.interrupts import GRACE_S

    # A slow crawl (0.2 s between requests to the mini-web's one host): Ctrl-C lands
    # while the corpus stage is still fetching.
    config = CONFIG.replace("miniweb_articles = 30", "miniweb_articles = 400")
    config += "[corpus.fetch]\nper_host_delay_s = 0.2\n"
    (tmp_path / "run.toml").write_text(config)
    workspace = tmp_path / "workspace"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(GPT2LAB_HOME=str(workspace), PYTHONPATH=str(REPO_ROOT), COLUMNS="200")
    pid, fd = _start(tmp_path, env)
    code = None
    try:
        output = b""
        deadline = time.monotonic() + 300
        while b"shards to do" not in output and time.monotonic() < deadline:
            output += read_terminal(fd, time.monotonic() + 0.5)
        assert b"shards to do" in output, output.decode(errors="replace")[-3000:]
        time.sleep(1.0)  # fetching and extracting now
        os.write(fd, b"\x03")
        pressed = time.monotonic()
        output += read_terminal(fd, pressed + GRACE_S + EXIT_WITHIN_S)
        code = exit_code(pid, max(0.1, GRACE_S + EXIT_WITHIN_S - (time.monotonic() - pressed)))
        took = time.monotonic() - pressed
    finally:
        if code is None:
            kill(pid)
        os.close(fd)
    text = output.decode(errors="replace")
    assert code == 130 and took < GRACE_S + EXIT_WITHIN_S, (code, took, text[-3000:])
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert last.endswith("stopped during corpus; `gpt2lab run --config run.toml` resumes")
    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {run.info.run_name: run.info.status for run in runs}["interrupted"] == "KILLED"
