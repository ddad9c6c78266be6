"""Whole runs: `demo` (offline, on embedded defaults), `run` (the end-to-end flow on your
settings), `report`, `schedule` (runs on a cron by a Prefect server) and `ui` (MLflow and
Prefect on 127.0.0.1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import app, fail, make_console, running_flows


@app.command()
def demo(
    name: Annotated[str, typer.Option(help="Run name (and folder).")] = "demo",
) -> None:
    """The whole chain offline, in a few minutes: a local mini-web -> corpus -> BPE ->
    pretrain -> fine-tune -> evaluate -> preferences (simulated judge) -> report."""
    import time

    from pipelines.end_to_end import EndToEndConfig, run_end_to_end

    started = time.perf_counter()
    try:
        with running_flows():
            result = run_end_to_end(EndToEndConfig(name=name))
    except (ValueError, RuntimeError) as err:
        raise fail(err) from None
    console = make_console()
    console.rule(f"gpt2lab demo: {time.perf_counter() - started:.0f} s")
    _print_end_to_end(result)
    checkpoint = result.outputs["finetune"]["checkpoint"]
    console.print(
        f"Open {result.report} in a browser, or run `gpt2lab ui` and look at the "
        "'end-to-end' experiment. Sample the fine-tuned model with:\n"
        f"  gpt2lab generate --model {checkpoint} --prompt 'Day 3. Wind'"
    )


@app.command("run")
def run_end_to_end(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of EndToEndConfig fields.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (and folder).")] = None,
) -> None:
    """The end-to-end flow: corpus, encode, pretrain, finetune, evaluate, preferences, report.

    Stages whose settings and inputs are unchanged since they last finished are skipped.
    """
    from pipelines.config_files import load_config
    from pipelines.end_to_end import EndToEndConfig
    from pipelines.end_to_end import run_end_to_end as run_flow

    try:
        settings = load_config(EndToEndConfig, config, {"name": name})
        with running_flows():
            result = run_flow(settings)
    except (ValueError, RuntimeError) as err:
        raise fail(err) from None
    _print_end_to_end(result)


def _print_end_to_end(result) -> None:
    console = make_console()
    for stage, status in result.stages.items():
        console.print(f"  {stage:<12} {status}")
    console.print(f"report: {result.report}")
    console.print(
        f"MLflow run {result.mlflow_run_id} in experiment 'end-to-end'; see it with: gpt2lab ui"
    )


@app.command()
def report(
    run_ids: Annotated[
        list[str],
        typer.Argument(help="End-to-end or evaluate MLflow run id(s) or name(s) (`demo`)."),
    ],
    out: Annotated[Path | None, typer.Option(help="Folder (default: workspace/reports/).")] = None,
) -> None:
    """Render a run's report from MLflow (end-to-end or evaluate), or several side by side."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from model.atomic_files import write_file_atomically
    from pipelines.workspace import mlflow_tracking_uri, workspace_dir
    from reports.run_report import compare, write_report

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    try:
        run_ids = [run_id_for(client, reference) for reference in run_ids]
    except ValueError as err:
        raise fail(err) from None
    folder = out or workspace_dir() / "reports" / "-".join(r[:8] for r in run_ids)
    try:
        if len(run_ids) == 1:
            html, _ = write_report(run_ids[0], folder, client)
        else:
            page, markdown = compare(run_ids, client)
            folder.mkdir(parents=True, exist_ok=True)
            html = folder / "comparison.html"
            write_file_atomically(html, page)
            write_file_atomically(folder / "comparison.md", markdown)
    except ValueError as err:  # a run that is not there, named with the store
        raise fail(err) from None
    except MlflowException as err:
        raise fail(ValueError(f"MLflow: {err.message}")) from None
    make_console().print(f"report: {html} (and its .md beside it)")


def run_id_for(client, reference: str) -> str:
    """The id of the run `reference` names: an MLflow run id as it is, else the newest
    end-to-end or evaluate run of that name (the name `demo` or `run --name` gave it)."""
    from reports.mlflow_names import END_TO_END_KIND, EVALUATE_KIND, KIND_TAG

    if re.fullmatch(r"[0-9a-f]{32}", reference):
        return reference
    experiments = [e.experiment_id for e in client.search_experiments()]
    quoted = reference.replace("'", "\\'")
    found = client.search_runs(
        experiments,
        f"attributes.run_name = '{quoted}'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    kinds = (END_TO_END_KIND, EVALUATE_KIND)
    reportable = [run for run in found if run.data.tags.get(KIND_TAG) in kinds]
    if not reportable:
        raise ValueError(f"no end-to-end or evaluate run named {reference!r} (nor a run id)")
    return reportable[0].info.run_id  # the newest of that name


@app.command()
def schedule(
    cron: Annotated[str | None, typer.Option(help='Cron schedule, e.g. "0 3 * * *".')] = None,
    interval: Annotated[float | None, typer.Option(help="Or: seconds between runs.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML file of EndToEndConfig fields.")
    ] = None,
    deployment: Annotated[str, typer.Option(help="Deployment name.")] = "scheduled",
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server.")] = 4200,
    work_pool: Annotated[
        str | None,
        typer.Option(help="Deploy to this process work pool (created if missing) instead."),
    ] = None,
    concurrency_limit: Annotated[
        int, typer.Option(min=1, help="With --work-pool: flow runs the pool runs at once.")
    ] = 1,
    start_worker: Annotated[
        bool, typer.Option(help="With --work-pool: also run a worker here until Ctrl-C.")
    ] = False,
) -> None:
    """Run the end-to-end flow on a schedule. By default a Prefect server on 127.0.0.1 plans
    the runs and this process runs them (Ctrl-C stops it). With --work-pool, the deployment
    goes to that work pool on your Prefect server, and workers run it."""
    from pipelines.config_files import load_config
    from pipelines.end_to_end import EndToEndConfig
    from pipelines.schedule import deploy_on_work_pool, serve_end_to_end

    _stop_on_sigterm()
    try:
        settings = load_config(EndToEndConfig, config, {})
        if work_pool is None:
            serve_end_to_end(
                settings, deployment=deployment, cron=cron, interval=interval, port=prefect_port
            )
            return
        if start_worker:
            make_console().print(f"end-to-end/{deployment} on work pool {work_pool!r}")
        api = deploy_on_work_pool(
            settings,
            deployment=deployment,
            cron=cron,
            interval=interval,
            work_pool=work_pool,
            concurrency_limit=concurrency_limit,
            start_worker=start_worker,
            port=prefect_port,
        )
        if not start_worker:
            make_console().print(
                f"end-to-end/{deployment} deployed on work pool {work_pool!r} at {api}. "
                f"Workers run it: PREFECT_API_URL={api} prefect worker start --pool {work_pool}"
            )
    except (ValueError, RuntimeError) as err:
        raise fail(err) from None
    except KeyboardInterrupt:
        pass


@app.command()
def ui(
    mlflow_port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    prefect_port: Annotated[int, typer.Option(help="Port of the Prefect server.")] = 4200,
) -> None:
    """Start the MLflow UI (on the workspace's store) and a Prefect server, on 127.0.0.1.
    Ctrl-C or SIGTERM stops both."""
    import time

    from pipelines.ui import SWITCH_HINT, mlflow_pages, start_ui, stop_ui

    console = make_console()
    _stop_on_sigterm()  # `kill`, systemd, a container stop: stop the servers as Ctrl-C does
    try:
        services = start_ui(mlflow_port=mlflow_port, prefect_port=prefect_port)
    except RuntimeError as err:
        raise fail(err) from None
    except KeyboardInterrupt:  # stopped while starting: start_ui stopped what it started
        return
    try:
        for service in services:
            note = "" if service.process else "  (already running)"
            if service.name.startswith("MLflow"):  # its pages, in the model-training view
                (_, experiments), *others = mlflow_pages(service.url)
                console.print(f"{service.name}: {experiments}{note}", soft_wrap=True)
                for what, url in others:
                    console.print(f"  {what}: {url}", soft_wrap=True)
                console.print(f"  {SWITCH_HINT}")
            else:
                console.print(f"{service.name}: {service.url}{note}")
        prefect_api = f"{services[-1].url}/api"
        console.print(f"Flows use this Prefect server with PREFECT_API_URL={prefect_api}.")
        console.print("Ctrl-C (or SIGTERM) stops what was started here.")
        while all(s.process is None or s.process.poll() is None for s in services):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_ui(services)


def _stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, the way Ctrl-C does, so that `finally` blocks
    stop the servers this command started (by default SIGTERM ends Python at once)."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
