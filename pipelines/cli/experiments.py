"""Experiments that retell a result of the GPT-2 story end to end: `experiment stylistic`
(Ziegler et al. 2019's preference fine-tuning, in miniature)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from pipelines.cli.common import app, fail, make_console, running_flows

experiment = typer.Typer(
    help="Experiments that retell a result of the GPT-2 story end to end.", no_args_is_help=True
)
app.add_typer(experiment, name="experiment")


@experiment.command("stylistic")
def stylistic(
    comparisons: Annotated[
        int | None, typer.Option(help="Votes to collect and learn from (default 5000).")
    ] = None,
    curve: Annotated[
        str | None,
        typer.Option(help="Smaller numbers of comparisons to tune on too, e.g. 500,1000,2500."),
    ] = None,
    mistake_rate: Annotated[
        float | None,
        typer.Option(help="Share of the scripted annotator's votes that are random (0.1)."),
    ] = None,
    start_model: Annotated[
        str | None, typer.Option(help="A checkpoint trained on the stories (default: train one).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML file of StylisticConfig fields (sections reward, dpo)."
        ),
    ] = None,
) -> None:
    """Tune a small model on 5,000 votes of a scripted annotator (VADER: "the more
    positive continuation"), cast on the comparison page, and judge it against the start
    model the same way: the win rate beside Ziegler et al.'s 86%, and the curve.

    Example: gpt2lab experiment stylistic --comparisons 5000
    """
    from pipelines.config_files import load_config
    from pipelines.stylistic import StylisticConfig, stylistic_flow

    try:
        sizes = [int(k) for k in curve.split(",") if k.strip()] if curve is not None else None
        overrides = {
            "comparisons": comparisons,
            "curve": sizes,
            "mistake_rate": mistake_rate,
            "start_model": start_model,
        }
        settings = load_config(StylisticConfig, config, overrides)
        with running_flows():
            result = stylistic_flow(settings)
    except ValueError as err:
        raise fail(err) from None
    console = make_console()
    console.print(Text(result.report))
    console.print(f"report: {result.folder / 'report.md'}")
    console.print(f"MLflow run {result.mlflow_run_id} in experiment 'stylistic-preference'")
