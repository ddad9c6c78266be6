"""`gpt2lab ui`: the MLflow UI on the workspace's store and a Prefect server, both on
127.0.0.1, for reviewing runs and scheduling flows.

The MLflow addresses it prints ask for the UI's model-training view (`mlflow_pages`).

Each server runs in a session (process group) of its own, and is stopped as a group: both
start helpers of their own (MLflow its uvicorn server, Prefect its services), and stopping
only the process we started could leave those running. Each also gets SIGTERM from Linux
when the command that started it dies, however it dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipelines.services import answers, spawn, wait_until_up
from pipelines.workspace import mlartifacts_dir, mlflow_tracking_uri, workspace_dir


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen | None  # None: it was already running, we only point at it
    health: str | None = None  # the URL that answers once it is up
    log: Path | None = None  # where its output goes, when we started it


def start_ui(
    host: str = "127.0.0.1",
    mlflow_port: int = 5000,
    prefect_port: int = 4200,
    timeout: float = 120.0,
) -> list[Service]:
    """Start (or find already running) the MLflow UI and a Prefect server. Both start at
    once, then are waited for. If one fails to start (or Ctrl-C comes meanwhile), the
    other is stopped again before the error goes on."""
    services: list[Service] = []
    try:
        services.append(_launch_mlflow_ui(host, mlflow_port))
        services.append(_launch_prefect_server(host, prefect_port))
        for service in services:
            _wait_for(service, timeout)
    except BaseException:
        stop_ui(services)
        raise
    return services


# MLflow 3.17's UI shows either its GenAI view (traces, prompts) or its model-training view
# (runs, the model registry). It decides per page: the address's `workflowType` parameter
# when it has one, else the choice last made with the "GenAI | Model training" switch at
# the top left (kept in the browser's localStorage), else GenAI. Neither the server nor the
# experiments' `mlflow.experimentKind` tag chooses it, and the UI's own links (the
# experiments list, the menu, the model list) drop the parameter.
SWITCH_HINT = (
    'Elsewhere MLflow opens in its GenAI view: click "Model training" at its top left once, '
    "and your browser keeps that choice."
)
MODELS_LISTED = 5  # registered models `gpt2lab ui` links, the most recently changed first


def mlflow_pages(base_url: str) -> list[tuple[str, str]]:
    """The MLflow UI pages `gpt2lab ui` points at, as (what, address), each in the model-
    training view: the experiments, the end-to-end experiment's runs (once there is one),
    and the pages of the latest registered models. (The registered-models list page drops
    the view's parameter, so each model's own page is linked instead.)"""
    from pipelines.tracking import MODEL_TRAINING_VIEW  # here: `gpt2lab schedule` needs no MLflow

    base = base_url.rstrip("/")
    pages = [("experiments", f"{base}/#/experiments?{MODEL_TRAINING_VIEW}")]
    experiment, models = _look_up_store()
    if experiment is not None:
        pages.append(
            ("end-to-end runs", f"{base}/#/experiments/{experiment}/runs?{MODEL_TRAINING_VIEW}")
        )
    pages += [(f"registered model {name}", mlflow_model_url(base, name)) for name in models]
    return pages


def mlflow_model_url(base_url: str, name: str) -> str:
    """Registered model `name`'s page in the MLflow UI at `base_url`, in the model-training
    view (its versions, aliases, and the runs that made them)."""
    from pipelines.tracking import MODEL_TRAINING_VIEW

    return f"{base_url.rstrip('/')}/#/models/{quote(name, safe='')}?{MODEL_TRAINING_VIEW}"


def _look_up_store() -> tuple[str | None, list[str]]:
    """The end-to-end experiment's id (None before the first run) and the latest registered
    models' names, from the tracking store. Nothing when the store does not answer: fewer
    links are better than no UI."""
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import failing_fast
    from reports.mlflow_names import END_TO_END_EXPERIMENT

    client = MlflowClient(mlflow_tracking_uri())
    try:
        with failing_fast(5.0):  # a tracking server that is away: one quick try
            experiment = client.get_experiment_by_name(END_TO_END_EXPERIMENT)
            models = client.search_registered_models(
                max_results=MODELS_LISTED, order_by=["last_updated_timestamp DESC"]
            )
    except Exception:  # noqa: BLE001 - see the docstring
        return None, []
    return (experiment.experiment_id if experiment else None), [m.name for m in models]


def start_prefect_server(
    host: str = "127.0.0.1", port: int = 4200, timeout: float = 120.0
) -> Service:
    """A Prefect server (with its UI) on `host:port`, or the one already answering there.
    Its database is in PREFECT_HOME (the workspace's `prefect/` folder by default)."""
    service = _launch_prefect_server(host, port)
    try:
        _wait_for(service, timeout)
    except BaseException:
        stop_ui([service])
        raise
    return service


def _launch_mlflow_ui(host: str, port: int) -> Service:
    tracking = mlflow_tracking_uri()
    if tracking.startswith(("http://", "https://")):
        return Service("MLflow", tracking, None)  # a tracking server you run
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking]
    command += ["--default-artifact-root", mlartifacts_dir().as_uri()]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    # MLflow 3 also starts a job runner and seven job-queue consumers (about 250 MB each)
    # for server-side jobs (LLM judges, trace rollups) that browsing runs never uses: this
    # switch leaves them out.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return _launch("MLflow UI", url, f"{url}/health", command, "mlflow-ui.log", env)


def _launch_prefect_server(host: str, port: int) -> Service:
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", host]
    command += ["--port", str(port)]
    return _launch("Prefect server", url, f"{url}/api/health", command, "prefect-server.log")


def _launch(
    name: str, url: str, health: str, command: list[str], log_name: str, env=None
) -> Service:
    """Start the server unless one already answers at `health`; does not wait for it."""
    if answers(health):
        return Service(name, url, None, health)
    log = workspace_dir() / "logs" / log_name
    process = spawn(command, log, env or os.environ, detached=True, dies_with_parent=True)
    return Service(name, url, process, health, log)


def _wait_for(service: Service, timeout: float) -> None:
    if service.process is None or service.health is None:
        return
    wait_until_up(
        f"the {service.name} at {service.url}",
        lambda: answers(service.health),
        service.process,
        service.log,
        timeout,
    )


def stop_ui(services: list[Service], timeout: float = 20.0) -> None:
    """Stop the services this process started (not those it found running), each with
    whatever it started; a service still running `timeout` seconds later is killed."""
    started = [s.process for s in services if s.process is not None]
    for process in started:
        _signal_group(process, signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        # Helpers that outlive their parent's exit are still in its group.
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Send `signum` to the process group `process` leads (its own session, see spawn)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
        os.killpg(process.pid, signum)
