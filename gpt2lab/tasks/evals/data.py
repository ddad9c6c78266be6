"""Reading a task's rows: local JSON-lines or CSV files, checked field by field."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from gpt2lab.model.errors import Gpt2labError
from gpt2lab.tasks.evals.task import Row


class EvalDataError(Gpt2labError):
    """A data file that cannot be used; the message names the file, row and field."""


def read_rows(path: Path, fields: Sequence[str], limit: int | None = None) -> list[Row]:
    """Rows of a `.jsonl` or `.csv` file, each checked to hold every one of `fields`
    as text. `limit` keeps the first rows only (quick runs)."""
    if not path.is_file():
        raise EvalDataError(f"eval data {path}: no such file")
    reader = _jsonl_rows if path.suffix == ".jsonl" else _csv_rows
    rows = []
    for line, row in reader(path):
        for name in fields:
            value = row.get(name) if isinstance(row, dict) else None
            if not isinstance(value, str):
                problem = "is missing" if value is None else f"is {type(value).__name__}, not text"
                raise EvalDataError(f"{path}:{line}: row {len(rows) + 1}: field {name!r} {problem}")
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _jsonl_rows(path: Path):
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as error:
                raise EvalDataError(f"{path}:{line}: not JSON ({error.msg})") from None


def _csv_rows(path: Path):
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, row
