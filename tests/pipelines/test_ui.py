"""`gpt2lab ui`: the MLflow UI and a Prefect server answer on loopback, then stop."""

from __future__ import annotations

import pytest

from pipelines.services import answers, free_port
from pipelines.ui import start_ui, stop_ui


@pytest.mark.slow
def test_the_mlflow_ui_and_prefect_server_start_on_loopback_and_stop(workspace):
    mlflow_port, prefect_port = free_port(), free_port()
    services = start_ui(mlflow_port=mlflow_port, prefect_port=prefect_port)
    try:
        assert [s.name for s in services] == ["MLflow UI", "Prefect server"]
        assert answers(f"http://127.0.0.1:{mlflow_port}/health")
        assert answers(f"http://127.0.0.1:{prefect_port}/api/health")
        # The UI reads the workspace's own store: the experiments MLflow made there.
        listing = f"http://127.0.0.1:{mlflow_port}/api/2.0/mlflow/experiments/search?max_results=5"
        assert answers(listing, lambda r: r.json()["experiments"][0]["name"] == "Default")
        again = start_ui(mlflow_port=mlflow_port, prefect_port=prefect_port)
        assert all(s.process is None for s in again)  # found running: reused, not doubled
    finally:
        stop_ui(services)
    assert not answers(f"http://127.0.0.1:{mlflow_port}/health")
    assert not answers(f"http://127.0.0.1:{prefect_port}/api/health")


def test_the_mlflow_pages_it_prints_ask_for_the_model_training_view(workspace):
    from mlflow.tracking import MlflowClient

    from pipelines.ui import mlflow_pages
    from pipelines.workspace import mlflow_tracking_uri

    base = "http://127.0.0.1:5000/"
    view = "?workflowType=machine_learning"  # MLflow 3.17's UI: GenAI unless asked
    assert mlflow_pages(base) == [("experiments", f"http://127.0.0.1:5000/#/experiments{view}")]

    client = MlflowClient(mlflow_tracking_uri())
    experiment = client.create_experiment("end-to-end")
    for name in ("gpt2lab-small", "gpt2lab night run"):
        client.create_registered_model(name)
    pages = dict(mlflow_pages(base))
    assert pages["end-to-end runs"] == f"{base}#/experiments/{experiment}/runs{view}"
    assert pages["registered model gpt2lab-small"] == f"{base}#/models/gpt2lab-small{view}"
    assert pages["registered model gpt2lab night run"] == (
        f"{base}#/models/gpt2lab%20night%20run{view}"
    )
    assert len(pages) == 4
