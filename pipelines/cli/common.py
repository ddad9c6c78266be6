"""What every verb shares: the `gpt2lab` Typer app, a console, one-line errors."""

from __future__ import annotations

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


def make_console(stderr: bool = False) -> Console:
    """A console for a command's output. Made per call, so that the terminal width
    (COLUMNS) is read when the command runs. When the output is not a terminal (a pipe, a
    log file, CI), lines are not wrapped: a path or a command to copy stays on one line
    (rich would otherwise break it at 80 columns)."""
    console = Console(stderr=stderr)
    console.soft_wrap = not console.is_terminal
    return console


@app.callback()
def _setup() -> None:
    configure_environment()


def fail(err: Exception) -> typer.Exit:
    """Print a user-fixable error as one line and exit with status 2."""
    make_console(stderr=True).print(
        f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)
