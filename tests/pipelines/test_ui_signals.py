"""`gpt2lab ui` as a service manager stops it: SIGTERM stops both servers and everything
they started, as Ctrl-C does, and MLflow runs without its job workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipelines.services import answers, free_port


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_sigterm_stops_both_servers_and_mlflow_starts_no_job_workers(workspace, tmp_path):
    mlflow_port, prefect_port = free_port(), free_port()
    env = {**os.environ, "GPT2LAB_HOME": str(workspace), "PREFECT_HOME": str(tmp_path / "pf")}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "pipelines.cli", "ui"]
    command += ["--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)]
    log = tmp_path / "ui.log"
    with open(log, "wb") as out:
        ui = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 150
        health = (
            f"http://127.0.0.1:{mlflow_port}/health",
            f"http://127.0.0.1:{prefect_port}/api/health",
        )
        while not all(answers(url) for url in health):
            assert ui.poll() is None, f"gpt2lab ui exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"servers not up: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        started = psutil.Process(ui.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        assert any("mlflow" in c for c in commands) and any("prefect" in c for c in commands)
        # MLflow's server-side job runner and its queue consumers are not started.
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands

        print('up', time.monotonic() - deadline + 150)
        t = time.monotonic()
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(60) == 0, log.read_text()[-2000:]
        print('stop', time.monotonic() - t)
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p.pid) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p.pid for p in started if _alive(p.pid)]
    for pid in left:  # do not leave them to the next test, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after SIGTERM: {left}"
    assert not any(answers(url) for url in health)
