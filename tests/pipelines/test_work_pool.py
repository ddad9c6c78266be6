"""Scheduling as teams run Prefect, end to end on loopback, step by step as
docs/end-to-end.md ("Scheduling with a work pool") tells it:

1. `gpt2lab ui`: the MLflow UI and a Prefect server (MLflow without its job workers);
2. `gpt2lab schedule --work-pool gpt2lab --start-worker --config small.toml`: the process
   pool (one run at a time), the scheduled end-to-end deployment on it, and a worker;
3. a run of that deployment now, on the small config, completes on the worker;
4. meanwhile, `prefect deploy --all` with the shipped prefect.yaml: a deployment per flow;
5. a run of prefect.yaml's `end-to-end/nightly` made to fail (an eval task that does not
   exist) fails at its evaluate stage, and the webhook (a receiver in this test) gets the
   notice: run name, stage, one-line error, MLflow link;
6. SIGTERM stops the worker, then both servers, and nothing they started is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from pipelines.failure_hooks import MLFLOW_URL_ENV, WEBHOOK_ENV
from pipelines.services import answers, free_port
from pipelines.workspace import mlflow_tracking_uri
from tests.webhook import Receiver

from .test_end_to_end import SMALL
from .test_schedule import toml_of

ROOT = Path(__file__).resolve().parents[2]
DONE = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _api(method: str, url: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, url, trust_env=False, timeout=10, **kwargs)
    response.raise_for_status()
    return response


def _wait(what: str, check, timeout: float, logs: list[Path], poll: float = 1.0):
    """Poll `check()` until it returns something truthy; fail with the logs' tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(poll)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2500:]}" for log in logs if log.exists())
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{tails}")


def _run_deployment(api: str, name: str, config: dict | None = None) -> str:
    """Start a run of deployment `name` now (`prefect deployment run NAME`), with `config`
    instead of the deployment's own if given; returns the flow run's id."""
    deployment = _api("GET", f"{api}/deployments/name/{name}").json()
    parameters = {} if config is None else {"parameters": {"config": config}}
    created = _api("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", json=parameters)
    return created.json()["id"]


def _finished(api: str, flow_run_id: str) -> dict | None:
    run = _api("GET", f"{api}/flow_runs/{flow_run_id}").json()
    return run if run["state_type"] in DONE else None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen, timeout: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.slow
def test_deployments_on_a_work_pool_run_and_a_failure_reaches_the_webhook(workspace, tmp_path):
    mlflow_port, prefect_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    webhook = Receiver()
    env = {
        **os.environ,
        "GPT2LAB_HOME": str(workspace),
        "PREFECT_HOME": str(tmp_path / "pf"),
        "PYTHONPATH": str(ROOT),  # the flow runs import this checkout's pipelines
        "NO_PROXY": "127.0.0.1,localhost",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # look for runs every second (default 10)
        WEBHOOK_ENV: webhook.url,
        MLFLOW_URL_ENV: f"http://127.0.0.1:{mlflow_port}",
    }
    for name in ("PREFECT_API_URL", "PREFECT_TEST_MODE", "http_proxy", "HTTP_PROXY"):
        env.pop(name, None)
    logs = {name: tmp_path / f"{name}.log" for name in ("ui", "schedule", "deploy")}
    logs["worker"] = workspace / "logs" / "prefect-worker-gpt2lab.log"
    config = tmp_path / "small.toml"
    config.write_text(toml_of({"name": "pooled", **SMALL}))
    gpt2lab = [sys.executable, "-m", "pipelines.cli"]
    processes: list[subprocess.Popen] = []
    started: list[psutil.Process] = []
    try:
        # 1. The servers, as `gpt2lab ui` starts them.
        ui = _start(
            [
                *gpt2lab,
                "ui",
                "--mlflow-port",
                str(mlflow_port),
                "--prefect-port",
                str(prefect_port),
            ],
            env,
            logs["ui"],
        )
        processes.append(ui)
        mlflow_health = f"http://127.0.0.1:{mlflow_port}/health"
        up = lambda: answers(mlflow_health) and answers(f"{api}/health")  # noqa: E731
        _wait("gpt2lab ui", up, 150, [logs["ui"]], poll=0.5)
        servers = psutil.Process(ui.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in servers]
        assert any("mlflow" in c for c in commands), commands
        # MLflow's job runner and its job-queue consumers are not started.
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands

        # 2. The pool, the scheduled end-to-end deployment, a worker.
        env["PREFECT_API_URL"] = api
        schedule = [*gpt2lab, "schedule", "--work-pool", "gpt2lab", "--start-worker"]
        schedule += ["--cron", "0 3 * * *", "--config", str(config), "--deployment", "scheduled"]
        scheduler = _start(schedule, env, logs["schedule"])
        processes.append(scheduler)
        deployed = lambda: answers(f"{api}/deployments/name/end-to-end/scheduled")  # noqa: E731
        _wait("gpt2lab schedule --work-pool", deployed, 120, [logs["schedule"]])
        pool = _api("GET", f"{api}/work_pools/gpt2lab").json()
        assert (pool["type"], pool["concurrency_limit"]) == ("process", 1)

        # 3. A run of the scheduled deployment now: its parameters are small.toml's config.
        run_id = _run_deployment(api, "end-to-end/scheduled")

        # 4. Meanwhile, every flow's deployment from the shipped prefect.yaml, from a folder
        # of its own where their runs will work (`prefect deploy` records it).
        checkout = tmp_path / "runs"
        checkout.mkdir()
        command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
        command += ["--prefect-file", str(ROOT / "prefect.yaml")]
        with open(logs["deploy"], "wb") as out:
            done = subprocess.run(
                command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180
            )
        assert done.returncode == 0, logs["deploy"].read_text()[-3000:]
        listed = _api("POST", f"{api}/deployments/filter", json={}).json()
        by_name = {d["name"]: d for d in listed}
        shipped = {"nightly", "corpus", "encode", "train", "evaluate", "preferences", "tuning"}
        assert shipped <= set(by_name)
        workdir = {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}
        assert by_name["nightly"]["pull_steps"] == [workdir]  # no git, no download
        assert by_name["nightly"]["work_pool_name"] == "gpt2lab"

        # The small run completes on the worker.
        run = _wait("the small run", lambda: _finished(api, run_id), 300, list(logs.values()), 2)
        assert run["state_type"] == "COMPLETED", run["state"]
        assert (workspace / "end-to-end" / "pooled" / "report" / "report.html").exists()

        # 5. A run of prefect.yaml's end-to-end/nightly made to fail: on the small config
        # its first four stages are skipped (unchanged), and evaluate fails.
        broken = {"name": "pooled", **SMALL, "evaluate": {"tasks": ["no-such-task"]}}
        failing_id = _run_deployment(api, "end-to-end/nightly", broken)
        failed = _wait(
            "the failing run", lambda: _finished(api, failing_id), 180, list(logs.values()), 2
        )
        assert failed["state_type"] == "FAILED", failed["state"]
        _wait("the webhook's notice", lambda: webhook.received, 30, list(logs.values()), 0.5)
        (notice,) = webhook.received
        assert notice["run_name"] == failed["name"]
        assert notice["flow_run_id"] == failing_id
        assert notice["stage"] == "evaluate"
        assert notice["error"].startswith("stage evaluate failed: ")
        assert "no-such-task" in notice["error"] and "\n" not in notice["error"]
        prefix = f"http://127.0.0.1:{mlflow_port}/#/experiments/"
        assert notice["mlflow_run"].startswith(prefix)
        mlflow_run = MlflowClient(mlflow_tracking_uri()).get_run(
            notice["mlflow_run"].split("?")[0].rsplit("/", 1)[-1]
        )
        assert mlflow_run.data.tags["prefect.flow_run_id"] == failing_id
        assert mlflow_run.info.status == "FAILED"

        # 6. SIGTERM: the worker stops, then both servers, with all they started.
        started = [
            *psutil.Process(scheduler.pid).children(recursive=True),
            *psutil.Process(ui.pid).children(recursive=True),
        ]
        assert _stop(scheduler) == 0, logs["schedule"].read_text()[-2000:]
        assert _stop(ui) == 0, logs["ui"].read_text()[-2000:]
    finally:
        webhook.close()
        for process in reversed(processes):  # after a failure: stop what is still running
            if process.poll() is None:
                started += psutil.Process(process.pid).children(recursive=True)
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p.pid) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [(p.pid, p.name()) for p in started if _alive(p.pid)]
    for pid, _ in left:  # never leave them to the next test, whatever the verdict
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after SIGTERM: {left}"
    assert not answers(mlflow_health) and not answers(f"{api}/health")
