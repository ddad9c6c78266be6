"""`gpt2lab ui`: the MLflow UI on the workspace's store and a Prefect server, both on
127.0.0.1, for reviewing runs and scheduling flows."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from pipelines.services import answers, spawn, wait_until_up
from pipelines.workspace import mlartifacts_dir, mlflow_tracking_uri, workspace_dir


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen | None  # None: it was already running, we only point at it


def start_ui(
    host: str = "127.0.0.1",
    mlflow_port: int = 5000,
    prefect_port: int = 4200,
    timeout: float = 120.0,
) -> list[Service]:
    """Start (or find already running) the MLflow UI and a Prefect server."""
    logs = workspace_dir() / "logs"
    services = []
    tracking = mlflow_tracking_uri()
    if tracking.startswith(("http://", "https://")):
        services.append(Service("MLflow", tracking, None))  # a tracking server you run
    else:
        mlflow_url = f"http://{host}:{mlflow_port}"
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            tracking,
            "--default-artifact-root",
            mlartifacts_dir().as_uri(),
            "--host",
            host,
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ]
        services.append(
            _start(
                "MLflow UI",
                mlflow_url,
                f"{mlflow_url}/health",
                command,
                logs / "mlflow-ui.log",
                timeout,
            )
        )
    services.append(start_prefect_server(host, prefect_port, timeout))
    return services


def start_prefect_server(
    host: str = "127.0.0.1", port: int = 4200, timeout: float = 120.0
) -> Service:
    """A Prefect server (with its UI) on `host:port`, or the one already answering there.
    Its database is in PREFECT_HOME (the workspace's `prefect/` folder by default)."""
    url = f"http://{host}:{port}"
    command = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        host,
        "--port",
        str(port),
    ]
    log = workspace_dir() / "logs" / "prefect-server.log"
    return _start("Prefect server", url, f"{url}/api/health", command, log, timeout)


def _start(name: str, url: str, health: str, command: list[str], log, timeout: float) -> Service:
    if answers(health):
        return Service(name, url, None)
    process = spawn(command, log, os.environ)
    try:
        wait_until_up(f"the {name} at {url}", lambda: answers(health), process, log, timeout)
    except RuntimeError:
        process.kill()
        raise
    return Service(name, url, process)


def stop_ui(services: list[Service], timeout: float = 20.0) -> None:
    """Stop the services this process started (not those it found running)."""
    for service in services:
        if service.process is not None and service.process.poll() is None:
            service.process.terminate()
    for service in services:
        if service.process is not None:
            try:
                service.process.wait(timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
