"""Reading the prompts a comparison batch continues: a text file with one prompt per line,
JSON lines with a `prompt` field, or a Hugging Face dataset saved to disk (its `prompt`
column, else its `text` column). Errors name the file and line (or row)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from tasks.preferences.store import PreferenceError

DEMO_PROMPTS = Path(str(files("tasks.preferences") / "data" / "prompts.txt"))


def read_prompts(path: Path, limit: int | None = None) -> list[str]:
    """The first `limit` prompts of `path` (all when None); blank lines are skipped and
    a prompt that appears twice is kept once (it would be compared twice otherwise)."""
    if path.is_dir():
        candidates = _dataset_prompts(path)
    elif path.is_file():
        candidates = _file_prompts(path)
    else:
        raise PreferenceError(f"prompts file {path}: no such file or folder")
    prompts: dict[str, None] = {}  # ordered, without repeats
    for prompt in candidates:
        if prompt:
            prompts.setdefault(prompt)
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts:
        raise PreferenceError(f"prompts file {path}: no prompt in it")
    return list(prompts)


def _file_prompts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            yield _prompt_of(path, line_number, line)


def _dataset_prompts(path: Path) -> Iterator[str]:
    from datasets import Dataset, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise PreferenceError(f"prompts folder {path}: not a saved dataset ({error})") from None
    if not isinstance(dataset, Dataset):
        raise PreferenceError(f"prompts folder {path}: holds several splits; give one of them")
    column = next((c for c in ("prompt", "text") if c in dataset.column_names), None)
    if column is None:
        raise PreferenceError(
            f"prompts folder {path}: no 'prompt' or 'text' column "
            f"(columns: {', '.join(dataset.column_names)})"
        )
    for row, value in enumerate(dataset[column], start=1):
        if not isinstance(value, str):
            raise PreferenceError(f"prompts folder {path}: row {row}: {column!r} is not text")
        yield value.strip()


def _prompt_of(path: Path, line_number: int, line: str) -> str:
    if path.suffix != ".jsonl":
        return line.rstrip("\r\n").strip()
    if not line.strip():
        return ""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise PreferenceError(f"{path}:{line_number}: not JSON ({error.msg})") from None
    prompt = row.get("prompt") if isinstance(row, dict) else None
    if not isinstance(prompt, str):
        problem = "is missing" if prompt is None else f"is {type(prompt).__name__}, not text"
        raise PreferenceError(f"{path}:{line_number}: field 'prompt' {problem}")
    return prompt.strip()
