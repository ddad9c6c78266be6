"""Inside a real Prefect flow run, MLflow runs are tagged with that flow run's id and name."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.context import get_run_context

from pipelines.tracking import tracked_run
from pipelines.workspace import mlflow_tracking_uri

pytestmark = pytest.mark.usefixtures("prefect_harness")


@task
def stage(parent_run_id: str) -> str:
    """A task runs in a worker thread: it names its parent run explicitly."""
    with tracked_run("end-to-end", "stage", parent_run_id=parent_run_id) as run:
        return run.info.run_id


@flow(name="lineage-check")
def lineage_check() -> dict[str, str]:
    seen_by_flow = str(get_run_context().flow_run.id)
    with tracked_run("end-to-end", "parent", lineage={"corpus": "c" * 64}) as parent:
        child_id = stage(parent.info.run_id)
        return {"flow_run_id": seen_by_flow, "parent": parent.info.run_id, "child": child_id}


def test_runs_made_in_a_flow_carry_its_flow_run_id(workspace: Path) -> None:
    ids = lineage_check()

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    parent = client.get_run(ids["parent"]).data.tags
    child = client.get_run(ids["child"]).data.tags
    for tags in (parent, child):
        assert tags["prefect.flow_run_id"] == ids["flow_run_id"]
        assert tags["prefect.flow_name"] == "lineage-check"
    assert parent["gpt2lab.lineage.corpus"] == "c" * 64
    assert child["mlflow.parentRunId"] == ids["parent"]
