"""The failure notice: what a webhook receives when a top-level run fails, and that the
hook never raises nor logs the webhook's URL when the webhook is broken. Also which errors
the fetching tasks retry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed
from sqlalchemy.exc import OperationalError

from pipelines.failure_hooks import WEBHOOK_ENV, notify_failure
from pipelines.retries import is_transient, retry_if_transient
from pipelines.services import free_port
from pipelines.tracking import tracked_run
from tests.webhook import Receiver


@pytest.fixture(autouse=True)
def _logs_stay_local() -> Iterator[None]:
    """The hook logs through Prefect's run logger, which ships to the Prefect API: these
    made-up flow runs have none, and must not start one."""
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: False}):
        yield


def _failed_run(flow_run_id: str, message: str, parent_task_run_id=None):
    flow = SimpleNamespace(name="end-to-end")
    flow_run = FlowRun(
        id=flow_run_id,
        name="witty-fox",
        flow_id=uuid.uuid4(),
        parent_task_run_id=parent_task_run_id,
    )
    return flow, flow_run, Failed(message=message)


def test_a_failed_run_posts_its_name_stage_error_and_mlflow_link(workspace, receiver):
    flow_run_id = str(uuid.uuid4())
    with tracked_run("end-to-end", "nightly", tags={"prefect.flow_run_id": flow_run_id}) as run:
        pass
    message = (
        "Flow run encountered an exception: RuntimeError: stage evaluate failed: "
        "unknown eval task 'no-such-task'\nTraceback (most recent call last): ..."
    )
    notify_failure(*_failed_run(flow_run_id, message))

    (notice,) = receiver.received
    assert notice["run_name"] == "witty-fox"
    assert notice["flow"] == "end-to-end"
    assert notice["stage"] == "evaluate"
    assert notice["error"] == "stage evaluate failed: unknown eval task 'no-such-task'"
    experiment = run.info.experiment_id
    link = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run.info.run_id}"
    link += "?workflowType=machine_learning"  # MLflow's model-training view
    assert notice["mlflow_run"] == link
    assert "witty-fox" in notice["text"] and "evaluate" in notice["text"]


def test_a_subflow_leaves_the_notice_to_its_parent(workspace, receiver):
    parent_task = str(uuid.uuid4())
    notify_failure(*_failed_run(str(uuid.uuid4()), "ValueError: bad", parent_task))
    assert receiver.received == []


def test_a_broken_webhook_is_logged_without_its_url_and_never_raises(
    workspace, monkeypatch, caplog
):
    broken = Receiver(status=500)
    monkeypatch.setenv(WEBHOOK_ENV, broken.url)
    try:
        with caplog.at_level("INFO"):
            notify_failure(*_failed_run(str(uuid.uuid4()), "ValueError: corpus.links: empty"))
    finally:
        broken.close()
    assert len(broken.received) == 1  # it was tried once, and its answer was an error
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "failure notice not sent: HTTPError (HTTP 500)" in logged
    assert "s3cr3t" not in logged


def test_only_network_and_server_errors_are_retried():
    assert is_transient(httpx.ConnectError("refused"))
    assert is_transient(OperationalError("select 1", {}, ConnectionResetError()))
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as cause:
            raise RuntimeError("shard 3 failed") from cause
    except RuntimeError as wrapped:
        assert is_transient(wrapped)  # the cause counts
    assert not is_transient(FileNotFoundError("links.txt"))
    assert not is_transient(FloatingPointError("loss is NaN at step 12"))
    assert retry_if_transient(None, None, Failed(data=ConnectionResetError()))
    assert not retry_if_transient(None, None, Failed(data=ValueError("bad row 3")))


def test_a_tracking_server_that_is_away_still_lets_the_notice_go(workspace, receiver, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    notify_failure(*_failed_run(str(uuid.uuid4()), "RuntimeError: stage corpus failed: x"))
    (notice,) = receiver.received
    assert (notice["stage"], notice["mlflow_run"]) == ("corpus", None)
