"""`gpt2lab schedule` against a real Prefect server on loopback: the served end-to-end
deployment gets a scheduled run, which runs and completes (on a very small config)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from pipelines.services import free_port

from .test_end_to_end import SMALL


def toml_of(values: dict) -> str:
    """The SMALL config as TOML: top-level values, then one table per section."""
    lines = [f"{key} = {value!r}" for key, value in values.items() if not isinstance(value, dict)]
    for section, fields in values.items():
        if isinstance(fields, dict):
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def flow_runs(api: str, deployment: str) -> list[dict]:
    response = httpx.post(
        f"{api}/flow_runs/filter",
        trust_env=False,
        timeout=10,
        json={"deployments": {"name": {"any_": [deployment]}}},
    )
    response.raise_for_status()
    return response.json()


@pytest.mark.slow
def test_a_scheduled_end_to_end_run_is_created_and_completes(workspace, tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    config = tmp_path / "small.toml"
    config.write_text(toml_of({"name": "scheduled", **SMALL}))
    env = {
        **os.environ,
        "GPT2LAB_HOME": str(workspace),
        "PREFECT_HOME": str(tmp_path / "pf"),
        "PREFECT_API_URL": api,
        # Plan runs and look for them every few seconds (defaults: 60 s and 10 s).
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    env.pop("PREFECT_TEST_MODE", None)
    log = tmp_path / "schedule.log"
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "schedule",
        "--interval",
        "20",
        "--config",
        str(config),
        "--deployment",
        "nightly",
        "--prefect-port",
        str(port),
    ]
    with open(log, "wb") as out:
        served = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 480
        states: list[str] = []
        while time.monotonic() < deadline:
            if served.poll() is not None:
                pytest.fail(f"gpt2lab schedule exited: {log.read_text()[-3000:]}")
            try:
                runs = flow_runs(api, "nightly")
            except httpx.HTTPError:
                runs = []  # the server is still starting
            states = [run["state_type"] for run in runs]
            if "COMPLETED" in states or "FAILED" in states or "CRASHED" in states:
                break
            time.sleep(3)
        assert "COMPLETED" in states, f"run states {states}; log: {log.read_text()[-3000:]}"
    finally:
        os.killpg(served.pid, signal.SIGINT)
        try:
            served.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(served.pid, signal.SIGKILL)
    report = workspace / "end-to-end" / "scheduled" / "report" / "report.html"
    assert report.exists()
