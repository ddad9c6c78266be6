"""Reading a task's rows: local JSON-lines or CSV files (always), or the Hugging Face
dataset they sample (when online and asked for), checked field by field."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from model.errors import Gpt2labError
from tasks.evals.task import EvalTask, Row

Source = Literal["local", "hub"]


class EvalDataError(Gpt2labError):
    """A data file that cannot be used; the message names the file, row and field."""


def read_rows(
    path: Path,
    fields: Sequence[str],
    limit: int | None = None,
    list_fields: Sequence[str] = (),
) -> list[Row]:
    """Rows of a `.jsonl` or `.csv` file, each checked to hold every one of `fields`
    as text (and of `list_fields` as lists of text). `limit` keeps the first rows only
    (quick runs)."""
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
        for name in list_fields:
            if not _is_text_list(row.get(name)):
                raise EvalDataError(
                    f"{path}:{line}: row {len(rows) + 1}: field {name!r} is missing or not a "
                    "list of text"
                )
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def _is_text_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


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


def task_rows(task: EvalTask, source: Source = "local", limit: int | None = None) -> list[Row]:
    """The rows a task scores: its local file, or its hub dataset's split."""
    if source == "local":
        return read_rows(task.data.local, task.fields, limit, task.list_fields)
    return _hub_rows(task, task.data.hub_split, limit)


def few_shot_pool(task: EvalTask, source: Source = "local") -> list[Row]:
    """The rows few-shot examples are drawn from (none for a zero-shot task)."""
    if not task.few_shot:
        return []
    if source == "hub" and task.data.few_shot_hub_split:
        return _hub_rows(task, task.data.few_shot_hub_split, None)
    if task.data.few_shot_local is None:
        raise EvalDataError(f"task {task.name}: few_shot={task.few_shot} but no few-shot data")
    return read_rows(task.data.few_shot_local, task.fields, list_fields=task.list_fields)


def _hub_rows(task: EvalTask, split: str, limit: int | None) -> list[Row]:
    import datasets

    where = f"{task.data.hub_id}/{task.data.hub_config or ''}:{split}"
    if task.data.hub_id is None:
        raise EvalDataError(f"task {task.name}: no hub dataset declared; use its local data")
    try:
        dataset = datasets.load_dataset(task.data.hub_id, task.data.hub_config, split=split)
    except Exception as error:  # offline, unknown id, no such split: one line either way
        raise EvalDataError(
            f"task {task.name}: hub dataset {where} cannot be loaded "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "use the local data (--source local) or go online"
        ) from None
    rows = [dict(row) for row in dataset]
    if task.data.hub_rows is not None:
        rows = task.data.hub_rows(rows)
    rows = rows[:limit] if limit is not None else rows
    for number, row in enumerate(rows, start=1):
        for name in task.fields:
            if not isinstance(row.get(name), str):
                raise EvalDataError(f"{where}: row {number}: field {name!r} is missing or not text")
        for name in task.list_fields:
            if not _is_text_list(row.get(name)):
                raise EvalDataError(
                    f"{where}: row {number}: field {name!r} is missing or not a list of text"
                )
    return rows
