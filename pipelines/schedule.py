"""`gpt2lab schedule`: the end-to-end flow as a deployment that a Prefect server runs on a
schedule, served from this process.

Schedules need a real Prefect server (the local, temporary API that a plain flow run
starts refuses them). This starts one on 127.0.0.1, or uses the one already answering
there, then serves the `end-to-end` deployment: the server creates a run at each time
the schedule says, and this process runs it (one at a time). Stopping this process
(Ctrl-C) stops the runs; the schedule is kept, not paused, so runs resume when it is
started again. For a cluster, a work pool with workers is the alternative (see
docs/end-to-end.md).
"""

from __future__ import annotations

import os

from pipelines.ui import start_prefect_server, stop_ui


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
