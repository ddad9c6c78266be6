"""When a run fails, someone hears of it: a JSON notice to a webhook.

The top-level flows (end-to-end and each stage's own flow) call `notify_failure` as their
Prefect `on_failure` hook. With `GPT2LAB_FAILURE_WEBHOOK` set in the environment of the
process that runs the flow (a worker's, `gpt2lab schedule`'s, or your shell's), a failed
run posts

    {"text": "gpt2lab: end-to-end run 'witty-fox' failed at stage evaluate: ...",
     "flow": "end-to-end", "run_name": "witty-fox", "flow_run_id": "...",
     "stage": "evaluate", "error": "stage evaluate failed: unknown eval task ...",
     "mlflow_run": "http://127.0.0.1:5000/#/experiments/1/runs/..."}

`text` is the one line chat webhooks (Slack, Mattermost, Teams' incoming webhooks) show.

Why a flow hook rather than a Prefect automation: the hook runs in the process that ran
the flow, so it works on every route the flows take (a worker on a work pool, `gpt2lab
schedule`, `gpt2lab run` on Prefect's temporary local API, which runs no automations),
and it can look up the run's MLflow link, which the Prefect server knows nothing of.

A hook must never turn a failure into a different one, or hold the run up: the post has a
short timeout, and any error is logged in one line and swallowed. The webhook's URL often
carries a secret token, so it is never logged.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Any

WEBHOOK_ENV = "GPT2LAB_FAILURE_WEBHOOK"
# The MLflow UI that links point at; default: the tracking server itself when it is one,
# else the UI that `gpt2lab ui` starts on the workspace's store (`tracking.mlflow_run_url`).
MLFLOW_URL_ENV = "GPT2LAB_MLFLOW_URL"
POST_TIMEOUT_S = 5.0
MLFLOW_TIMEOUT_S = 5.0

_PREFECT_PREFIX = "Flow run encountered an exception: "
_STAGE_FAILED = re.compile(r"stage (\S+) failed: ")  # the end-to-end flow's own wording


def notify_failure(flow, flow_run, state) -> None:
    """Prefect `on_failure` hook: post the failure notice, if a webhook is configured.
    A subflow leaves it to its parent (one notice per failed run, not one per level)."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url or flow_run.parent_task_run_id is not None:
        return
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    try:
        link = mlflow_link(str(flow_run.id))
    except Exception as error:  # noqa: BLE001 - a notice without the link beats none
        logger.warning("failure notice without its MLflow link: %s", type(error).__name__)
        link = None
    try:
        notice = failure_notice(
            flow.name, flow_run.name, str(flow_run.id), state.message or "", link
        )
        post_notice(url, notice)
    except Exception as error:  # noqa: BLE001 - a hook must not replace the run's failure
        # The error's type and status only: error messages can quote the URL (a secret).
        status = getattr(error, "code", None)  # urllib's HTTPError
        detail = f" (HTTP {status})" if status else ""
        logger.warning("failure notice not sent: %s%s", type(error).__name__, detail)
    else:
        logger.info("failure notice sent to the webhook in %s", WEBHOOK_ENV)


def failure_notice(
    flow: str, run_name: str, flow_run_id: str, message: str, mlflow_run: str | None
) -> dict[str, Any]:
    """The JSON body: who failed, at which stage, with which one-line error, and where its
    MLflow run is. The stage is the end-to-end stage that failed, else the flow itself."""
    error = one_line_error(message)
    found = _STAGE_FAILED.search(error)
    stage = found.group(1) if found else flow
    text = f"gpt2lab: {flow} run {run_name!r} failed at stage {stage}: {error}"
    if mlflow_run:
        text += f" ({mlflow_run})"
    return {
        "text": text,
        "flow": flow,
        "run_name": run_name,
        "flow_run_id": flow_run_id,
        "stage": stage,
        "error": error,
        "mlflow_run": mlflow_run,
    }


def one_line_error(message: str) -> str:
    """`Flow run encountered an exception: RuntimeError: stage x failed: y` -> the error's
    own first line, `stage x failed: y` (its type name dropped when it is a plain one)."""
    text = message.removeprefix(_PREFECT_PREFIX).strip()
    first = text.splitlines()[0] if text else "unknown error"
    return re.sub(r"^(RuntimeError|ValueError|Exception): ", "", first)


def post_notice(url: str, notice: dict[str, Any]) -> None:
    """POST the notice as JSON; an HTTP error status raises (the caller logs it).

    The standard library's client, not httpx: httpx logs every request's URL at INFO,
    and Prefect would ship that line, secret and all, to the run's logs."""
    body = json.dumps(notice).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
        response.read()


def mlflow_link(flow_run_id: str) -> str | None:
    """The MLflow UI address of the top-level run this Prefect flow run recorded (tagged
    with its flow-run id by `tracking.tracked_run`), or None if it made none."""
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import failing_fast, mlflow_run_url
    from pipelines.workspace import mlflow_tracking_uri
    from reports.mlflow_names import FLOW_RUN_ID_TAG, PARENT_RUN_TAG

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    with failing_fast(MLFLOW_TIMEOUT_S):  # a tracking server that is away: one quick try
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiments,
            f"tags.`{FLOW_RUN_ID_TAG}` = '{flow_run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=50,
        )
    top = [run for run in runs if PARENT_RUN_TAG not in run.data.tags]
    if not top:
        return None
    run = top[0].info
    return mlflow_run_url(run.experiment_id, run.run_id, os.environ.get(MLFLOW_URL_ENV))
