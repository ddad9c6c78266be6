"""Human preferences: `compare` (a comparison batch and its invite links),
`serve-comparisons` (the page), `preferences run` / `preferences report` (votes and win
rates) and `tune` (a reward model and DPO on a batch's votes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from pipelines.cli.common import app, fail, make_console

ModelsArg = Annotated[
    list[str],
    typer.Argument(
        help="Two or more models: checkpoint folders, hub ids, or models:/NAME@ALIAS or "
        "models:/NAME/VERSION (registered models)."
    ),
]
ModelsFlag = Annotated[
    bool, typer.Option("--models", help="Optional marker before the models, for readability.")
]
PromptsOpt = Annotated[
    Path | None,
    typer.Option(help="A file (a prompt per line, or .jsonl) or a saved dataset (default: demo)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file with more PreferencesConfig fields."),
]
DatabaseOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL (default: workspace/preferences.db).")
]


def _preferences_config(config: Path | None, overrides: dict):
    from pipelines.config_files import load_config
    from pipelines.preferences import PreferencesConfig

    return load_config(PreferencesConfig, config, overrides)


@app.command()
def compare(
    models: ModelsArg,
    models_flag: ModelsFlag = False,
    prompts: PromptsOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Prompts to use (the first n).")] = None,
    batch: Annotated[
        str | None, typer.Option(help="Batch name (default: from the config).")
    ] = None,
    annotators: Annotated[int | None, typer.Option(help="Invite links to make.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a comparison batch (sample every model on every prompt) and print invite links.

    Example: gpt2lab compare --models base/ tuned/ --prompts prompts.txt --n 200
    """
    from pipelines.preferences import make_batch

    del models_flag  # only there so that `--models A B` reads naturally
    overrides = {
        "models": models,
        "prompts": prompts,
        "n": n,
        "batch": batch,
        "annotators": annotators,
        "database": database,
    }
    try:
        settings = _preferences_config(config, overrides)
        ready = make_batch.fn(settings)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
    if not ready.made_now:
        console.print(f"batch {ready.name} already exists: reusing it (no new invites)")
        return
    if ready.invites_file is None:  # --annotators 0
        console.print(
            f"batch {ready.name} made, with no invite links: invite annotators on "
            "the admin page (gpt2lab serve-comparisons, then /admin)"
        )
        return
    console.print(f"batch {ready.name} made", end="; ")
    _print_invites(console, ready.invites_file)


def _print_invites(console: Console, invites_file: Path) -> None:
    console.print("invite links (each is a login, keep them private):")
    for line in invites_file.read_text().splitlines():
        console.print("  " + line.replace("\t", "  "), highlight=False, soft_wrap=True)
    console.print(f"saved in {invites_file}; start the page with: gpt2lab serve-comparisons")


@app.command("serve-comparisons")
def serve_comparisons(
    database: DatabaseOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    https_only: Annotated[
        bool | None,
        typer.Option(
            "--https-only/--no-https-only",
            help="Secure cookies (HTTPS only); on by default off loopback.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="A Host name the page answers to (repeat); loopback names by default."),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(help="A proxy address whose X-Forwarded-Proto/-For are believed (repeat)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Server processes (more than 1 pays off on PostgreSQL; see the docs)."
        ),
    ] = 1,
) -> None:
    """Run the comparison page (annotators vote at /join/<token>; admins at /admin)."""
    from pipelines.comparison_server import (
        ADMIN_TOKEN_ENV,
        admin_token,
        default_database_url,
        exposure_warning,
        serve,
        workers_warning,
    )
    from pipelines.workspace import workspace_dir

    console = make_console()
    try:
        admin_token()  # made on first use, so that its file exists to point at
    except ValueError as err:
        raise fail(err) from None
    where = (
        "$" + ADMIN_TOKEN_ENV
        if os.environ.get(ADMIN_TOKEN_ENV)
        else str(workspace_dir() / "preferences-admin-token")
    )
    database = database or default_database_url()
    for warning in (exposure_warning(host), workers_warning(database, workers)):
        if warning:
            console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    processes = f", {workers} worker processes" if workers > 1 else ""
    console.print(
        f"comparison page on http://{host}:{port}{processes}  (admin: /admin, token in {where})"
    )
    serve(
        database,
        host,
        port,
        https_only=https_only,
        allowed_hosts=allowed_host or None,
        trusted_proxies=trusted_proxy or None,
        workers=workers,
    )


preferences_app = typer.Typer(help="Preference batches: collect and report.", no_args_is_help=True)
app.add_typer(preferences_app, name="preferences")


@preferences_app.command("run")
def preferences_run(
    models: ModelsArg,
    models_flag: ModelsFlag = False,
    prompts: PromptsOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="Prompts to use (the first n).")] = None,
    judge: Annotated[
        str | None, typer.Option(help="people (the web page) or simulated (a scripted judge).")
    ] = None,
    target_votes: Annotated[int | None, typer.Option(help="Stop at this many comparisons.")] = None,
    deadline_hours: Annotated[float | None, typer.Option(help="Or after this long.")] = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The whole preferences flow: batch, page (or simulated judge), wait, analyse, log."""
    from pipelines.preferences import preferences_flow, with_resolved_models

    del models_flag
    overrides = {
        "models": models,
        "prompts": prompts,
        "n": n,
        "judge": judge,
        "target_votes": target_votes,
        "deadline_hours": deadline_hours,
        "database": database,
    }
    try:
        # Registered models resolved here, so that an unknown one is one line, not a failed
        # flow run.
        result = preferences_flow(with_resolved_models(_preferences_config(config, overrides)))
    except ValueError as err:
        raise fail(err) from None
    _print_preferences(result)


@preferences_app.command("report")
def preferences_report(
    batch: Annotated[str, typer.Argument(help="The batch's name.")],
    judge: Annotated[str, typer.Option(help="people or simulated (never mixed).")] = "people",
    database: DatabaseOpt = None,
) -> None:
    """Analyse a batch's votes as they stand: win rates, checks, MLflow, dataset export."""
    from pipelines.preferences import preferences_report_flow

    if judge not in ("people", "simulated"):
        raise fail(ValueError(f"--judge must be people or simulated, not {judge!r}"))
    try:
        result = preferences_report_flow(batch, judge, database)
    except ValueError as err:
        raise fail(err) from None
    _print_preferences(result)


def _print_preferences(result) -> None:
    console = make_console()
    console.print(Text((result.export / "summary.md").read_text()))
    console.print(f"pairs (prompt/chosen/rejected) and votes: {result.export}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'preferences'")


@app.command()
def tune(
    from_batch: Annotated[
        str, typer.Option("--from-batch", help="The comparison batch whose votes to learn from.")
    ],
    allow_simulated: Annotated[
        bool,
        typer.Option(help="Train on the simulated judge's votes when no person has voted."),
    ] = False,
    start_model: Annotated[
        str | None, typer.Option(help="The model to tune (default: the batch's first model).")
    ] = None,
    compare_with: Annotated[
        str | None,
        typer.Option("--compare", help="Who judges tuned vs start: people or simulated."),
    ] = None,
    database: DatabaseOpt = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML file of TuningConfig fields (sections reward and dpo)."
        ),
    ] = None,
) -> None:
    """Train a reward model and DPO on a batch's votes, then open tuned vs start for judging.

    Example: gpt2lab tune --from-batch base-vs-finetuned-1a2b3c4d
    """
    from pipelines.config_files import load_config
    from pipelines.tuning import (
        TuningConfig,
        check_votes,
        preference_tuning_flow,
        too_few_comparisons,
    )

    overrides = {
        "batch": from_batch,
        "allow_simulated": allow_simulated or None,
        "start_model": start_model,
        "compare": compare_with,
        "database": database,
    }
    try:
        settings = load_config(TuningConfig, config, overrides)
        # Bad votes: one line here, not a failed flow run's traceback.
        if warning := too_few_comparisons(check_votes(settings)):
            make_console(stderr=True).print(f"[bold yellow]warning:[/] {warning}", highlight=False)
        result = preference_tuning_flow(settings)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
    console.print(Text((result.folder / "summary.md").read_text()))
    console.print(f"tuned model: {result.policy.path}")
    console.print(f"reward model: {result.reward_model.path}")
    if result.invites_file is not None:
        console.print(f"new batch {result.new_batch}, tuned vs start", end="; ")
        _print_invites(console, result.invites_file)
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'preference-tuning'")
