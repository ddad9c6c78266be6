"""What every verb shares: the `gpt2lab` Typer app, a console, one-line errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from pipelines.workspace import configure_environment

app = typer.Typer(
    name="gpt2lab",
    help="The GPT-2 recipe end to end: corpus, BPE, training, evaluation, preferences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# The model a teaching command runs (generate, explain, chat): one option, one help text.
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Checkpoint folder (ours or Hugging Face), hub id, or models:/NAME@ALIAS or "
        "models:/NAME/VERSION (a registered model).",
    ),
]
# Where the tokenizer of that model comes from, and where a model runs (also evaluate's).
TokenizerOption = Annotated[
    str | None,
    typer.Option(help="Tokenizer folder or hub id (default: the model's folder or id)."),
]
DeviceOption = Annotated[
    str, typer.Option(help="auto (cuda when there is a GPU, else cpu), cpu or cuda.")
]


def make_console(stderr: bool = False) -> Console:
    """A console for a command's output. Made per call, so that the terminal width
    (COLUMNS) is read when the command runs. When the output is not a terminal (a pipe, a
    log file, CI), lines are not wrapped: a path or a command to copy stays on one line
    (rich would otherwise break it at 80 columns)."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


DEBUG_ENV = "GPT2LAB_DEBUG"


@app.callback()
def _setup(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks in the log (they are left out by default)."
    ),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    configure_environment()


class _WithoutTraceback(logging.Filter):
    """Prints a log record without its traceback: the command ends with the error in one
    line, and a person reading the log needs the message, not Prefect's call stack.
    (Records reach the Prefect API's own handler first, with the traceback, so the
    Prefect UI keeps it.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def _quiet_tracebacks() -> None:
    """Leave tracebacks out of what Prefect prints, unless --debug was given."""
    if os.environ.get(DEBUG_ENV):
        return
    from prefect.logging.handlers import PrefectConsoleHandler  # sets up Prefect's logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _WithoutTraceback) for f in handler.filters
        ):
            handler.addFilter(_WithoutTraceback())


@contextmanager
def running_flows() -> Iterator[None]:
    """For a command that runs flows: Prefect's API out of the reach of the terminal's
    Ctrl-C (`pipelines/prefect_api.py`), and Ctrl-C or SIGTERM ending the command within
    seconds of the work's next safe point with one line: where it stopped, and the command
    that resumes it (the same one). Nothing is left half-written: every stage writes
    atomically or resumably, which is also why the process may end at once afterwards
    rather than wait for worker threads to finish their batch (`pipelines/interrupts.py`)."""
    from pipelines import interrupts
    from pipelines.prefect_api import prefect_api

    command = " ".join(["gpt2lab", *sys.argv[1:]])
    interrupts.stop_on_interrupt(
        lambda where: interrupts.end_now(
            f"{where}; `{command}` resumes", [_kill_open_runs, _stop_prefect_api]
        )
    )
    _quiet_tracebacks()
    try:
        with prefect_api():
            yield
    except KeyboardInterrupt as stop:
        interrupts.end_now(f"{interrupts.where_stopped(stop)}; `{command}` resumes", [])


def _kill_open_runs() -> None:
    """Mark the MLflow runs this process left open KILLED (one quick try each)."""
    from pipelines import interrupts
    from pipelines.tracking import end_run_quickly

    for run_id in list(interrupts.open_runs):
        end_run_quickly(run_id, "KILLED")


def _stop_prefect_api() -> None:
    from pipelines.prefect_api import stop_current

    stop_current()


def fail(err: Exception) -> typer.Exit:
    """Print a user-fixable error as one line and exit with status 2."""
    make_console(stderr=True).print(
        f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)
