"""Reading a user's text and JSON Lines files, with errors that name the file and line.

Each reader raises its own error type (a training file a `TrainingError`, a dialogue file a
`DialogueDataError`), so the type is a parameter; the messages are the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_text_file(path: Path, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of `path` (a `what`, e.g. "training data"); `error` when it is not
    there or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start})") from None


def json_lines(path: Path, text: str, error: type[Exception]) -> Iterator[tuple[str, Any]]:
    """(`path:line`, JSON value) for each non-empty line of `text`, read from `path`;
    `error` at the first line that is not JSON."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as problem:
            raise error(f"{path}:{number}: not JSON ({problem.msg})") from None
