"""Running a flow's tasks on an existing Dask cluster: what the corpus and encode flows share.

A user starts a scheduler and workers on their machines (docs/scaling.md) and gives the
flow the scheduler's address (`tcp://HOST:8786`). Prefect's `DaskTaskRunner` then sends
each submitted task to a worker. The workers need this code, its environment, and the
flow's files at a place every one of them can reach.
"""

from __future__ import annotations

from logging import Logger

from prefect.task_runners import TaskRunner

DASK_SCHEDULER_TAG = "gpt2lab.dask.scheduler"
DASK_DASHBOARD_TAG = "gpt2lab.dask.dashboard"
# How long to wait for the scheduler at `dask_address`: Dask retries a refused connection
# meanwhile, so a scheduler that is still starting is found.
SCHEDULER_TIMEOUT_S = 30.0


def dask_dashboard(address: str) -> str | None:
    """The dashboard link of the Dask scheduler at `address`; None when it serves none (its
    dashboard needs `bokeh` installed where the scheduler runs). A wrong address is a
    one-line ValueError, before any work starts."""
    from distributed import Client
    from distributed.utils import format_dashboard_link

    try:
        with Client(address, timeout=SCHEDULER_TIMEOUT_S) as client:
            info = client.scheduler_info(n_workers=0)
    except OSError as error:
        raise ValueError(f"dask_address {address}: no Dask scheduler answered ({error})") from None
    port = info.get("services", {}).get("dashboard")
    if port is None:
        return None
    host = info["address"].split("://", 1)[-1].rsplit(":", 1)[0]
    return format_dashboard_link(host, port)


def announce_cluster(address: str, logger: Logger) -> tuple[dict[str, str], str | None]:
    """Log the scheduler and its dashboard link (where to watch the run), and return the
    MLflow tags that record them, with the link."""
    dashboard = dask_dashboard(address)
    tags = {DASK_SCHEDULER_TAG: address}
    if dashboard:
        tags[DASK_DASHBOARD_TAG] = dashboard
    logger.info(
        "Dask scheduler %s, dashboard: %s",
        address,
        dashboard or "none (install bokeh where the scheduler runs)",
    )
    return tags, dashboard


def cluster_task_runner(address: str) -> TaskRunner:
    """A task runner that sends tasks to the Dask cluster at `address`.

    The cluster's workers were started elsewhere. For the corpus flow they must run
    non-daemonic (see docs/corpus.md): a shard's extraction pool starts processes.
    """
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)
