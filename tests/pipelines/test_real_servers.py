"""The end-to-end flow against real servers: an `mlflow server` on loopback, over HTTP,
whose backend store is the PostgreSQL server that CI starts (not only a SQLite file)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from pipelines.end_to_end import EndToEndConfig, end_to_end_flow
from pipelines.services import answers, free_port
from reports.mlflow_names import STAGES

from .test_end_to_end import SMALL


@pytest.fixture
def mlflow_server(postgres_url, tmp_path):
    """`mlflow server` with its runs in a PostgreSQL schema of its own, on 127.0.0.1."""
    schema = f"mlflow_{os.getpid()}"
    url = make_url(postgres_url)
    admin = create_engine(url, poolclass=NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    backend = url.update_query_dict({"options": f"-c search_path={schema}"})
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend.render_as_string(hide_password=False),
        "--artifacts-destination",
        (tmp_path / "artifacts").as_uri(),
    ]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not answers(f"{address}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield address
    finally:
        server.terminate()
        server.wait(30)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.mark.slow
def test_an_end_to_end_run_tracks_into_an_mlflow_server_on_postgresql(
    workspace, prefect_harness, mlflow_server, monkeypatch
):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = end_to_end_flow(EndToEndConfig(name="remote", **SMALL))
    assert result.stages == dict.fromkeys(STAGES, "ran")

    client = MlflowClient(mlflow_server)  # read back over HTTP, from PostgreSQL
    parent = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'",
    )
    assert {run.data.tags["gpt2lab.stage"] for run in children} == set(STAGES)
    pretrain = next(r for r in children if r.data.tags["gpt2lab.stage"] == "pretrain")
    assert client.get_metric_history(pretrain.info.run_id, "loss/train")
    # Artifacts went through the server (proxied), not into the workspace.
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    reports = {a.path for a in client.list_artifacts(result.mlflow_run_id, "report")}
    assert reports == {"report/report.html", "report/report.md"}
