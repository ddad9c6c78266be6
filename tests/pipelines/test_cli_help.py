"""Every command's --help shows every option's help text whole.

Typer renders help with rich, which reads `[word]` as a markup tag and drops it: "TOML
file of fields ([reward], [dpo])" came out as "TOML file of fields (, )". This walks every
command, renders its help on a wide terminal, and checks each option's text is all there.
"""

from __future__ import annotations

import re

import typer.main
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def _commands(group, path: tuple[str, ...] = ()):
    """(argv path, command) for every command under `group`, groups included."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


def _flat(text: str) -> str:
    """The text as words: no table borders, one space between words."""
    return " ".join(text.replace("│", " ").split())


def test_every_help_text_is_shown_whole():
    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "1000"})
        assert result.exit_code == 0, (path, result.output)
        shown = _flat(result.output)
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in filter(None, texts):
            expected = _flat(text.replace("\\[", "["))
            # Rich may wrap a long command docstring; its first sentence must be whole.
            first = re.split(r"(?<=\.)\s", expected)[0]
            assert first in shown, f"gpt2lab {' '.join(path)} --help loses: {first!r}"
            checked += 1
        assert "(, )" not in shown and "()" not in shown, path
    assert checked > 50  # every command and option was looked at
