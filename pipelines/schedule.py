"""`gpt2lab schedule`: the end-to-end flow as a deployment that a Prefect server runs on a
schedule, in one of two ways.

Served from this process (the default): schedules need a real Prefect server (the local,
temporary API that a plain flow run starts refuses them). This starts one on 127.0.0.1,
or uses the one already answering there, then serves the `end-to-end` deployment: the
server creates a run at each time the schedule says, and this process runs it (one at a
time). Stopping this process (Ctrl-C) stops the runs; the schedule is kept, not paused, so
runs resume when it is started again.

On a work pool (`--work-pool NAME`), as teams run Prefect: the deployment goes to a
process work pool on the Prefect server you run (PREFECT_API_URL, or the one `gpt2lab ui`
started), and workers on any machine run its runs (`--start-worker` starts one here, as a
child of this command). The pool is created if missing, and runs one flow run at a time
by default. The other flows' deployments come from the shipped `prefect.yaml` (see
docs/end-to-end.md).
"""

from __future__ import annotations

import os
import sys
import time

from pipelines.services import answers, spawn
from pipelines.ui import Service, start_prefect_server, stop_ui
from pipelines.workspace import workspace_dir


def serve_end_to_end(
    config,
    *,
    deployment: str,
    cron: str | None,
    interval: float | None,
    host: str = "127.0.0.1",
    port: int = 4200,
) -> None:
    """Serve the end-to-end flow with `config` on a cron string or an interval (seconds)."""
    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of --cron or --interval")
    server = start_prefect_server(host, port)
    api = f"{server.url}/api"
    os.environ["PREFECT_API_URL"] = api  # for the run processes this one starts
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.end_to_end import end_to_end_flow

    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            end_to_end_flow.serve(
                name=deployment,
                cron=cron,
                interval=interval,
                parameters={"config": config.model_dump(mode="json")},
                limit=1,  # runs share a run folder: never two at once
                pause_on_shutdown=False,
                # Runs import the flow as pipelines.end_to_end, as installed (not
                # from a file path, which loses the module's names for its type hints).
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
    finally:
        stop_ui([server])  # only if this process started it


def deploy_on_work_pool(
    config,
    *,
    deployment: str,
    cron: str | None,
    interval: float | None,
    work_pool: str,
    concurrency_limit: int = 1,
    start_worker: bool = False,
    host: str = "127.0.0.1",
    port: int = 4200,
) -> str:
    """Create or update the process work pool `work_pool` (at most `concurrency_limit` runs
    at once) and the end-to-end deployment `deployment` on it, with `config` and the
    schedule. With `start_worker`, run a worker on the pool until Ctrl-C or SIGTERM.
    Returns the Prefect API's URL."""
    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of --cron or --interval")
    api = os.environ.get("PREFECT_API_URL") or f"http://{host}:{port}/api"
    if not answers(f"{api}/health"):
        raise RuntimeError(
            f"no Prefect server answers at {api}: start one with `gpt2lab ui` "
            "(or `prefect server start`), or point PREFECT_API_URL at yours"
        )
    from prefect.deployments.runner import EntrypointType, deploy
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.end_to_end import end_to_end_flow

    with temporary_settings(updates={PREFECT_API_URL: api}):
        ensure_work_pool(work_pool, concurrency_limit)
        runner_deployment = end_to_end_flow.to_deployment(
            name=deployment,
            cron=cron,
            interval=interval,
            parameters={"config": config.model_dump(mode="json")},
            concurrency_limit=1,  # runs of one name share a run folder: never two at once
            # Workers import the flow as pipelines.end_to_end (the checkout or the installed
            # package), so nothing is built, pushed or pulled.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deploy(
            runner_deployment,
            work_pool_name=work_pool,
            build=False,
            push=False,
            print_next_steps_message=False,
            ignore_warnings=True,
        )
    if start_worker:
        run_worker(work_pool, api)
    return api


def ensure_work_pool(name: str, concurrency_limit: int) -> None:
    """The process work pool `name`, created if missing, its concurrency limit set."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            create = WorkPoolCreate(
                name=name,
                type="process",
                base_job_template=template,
                concurrency_limit=concurrency_limit,
            )
            client.create_work_pool(create)
            return
        if pool.type != "process":
            raise ValueError(f"work pool {name!r} is of type {pool.type!r}, not 'process'")
        client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))


def run_worker(pool: str, api: str) -> None:
    """Run `prefect worker start --pool POOL` until it ends, Ctrl-C or SIGTERM (the caller
    turns SIGTERM into KeyboardInterrupt); then stop it (SIGTERM, then SIGKILL after 20 s)."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
    log = workspace_dir() / "logs" / f"prefect-worker-{pool}.log"
    env = {**os.environ, "PREFECT_API_URL": api}
    # A process group of its own, stopped as a group (see ui.stop_ui). A flow run the
    # worker started in a session of its own is left to the worker's own shutdown.
    worker = Service(
        "Prefect worker", pool, spawn(command, log, env, detached=True, dies_with_parent=True)
    )
    print(f"worker on pool {pool!r} started (log: {log}); Ctrl-C stops it", flush=True)
    try:
        while worker.process.poll() is None:
            time.sleep(1)
        raise RuntimeError(f"the Prefect worker exited (see {log})")
    finally:
        stop_ui([worker])
