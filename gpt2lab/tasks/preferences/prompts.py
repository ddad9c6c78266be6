"""Reading the prompts a comparison batch continues: a text file with one prompt per line,
or JSON lines with a `prompt` field. Errors name the file and line."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from gpt2lab.tasks.preferences.store import PreferenceError

DEMO_PROMPTS = Path(str(files("gpt2lab.tasks.preferences") / "data" / "prompts.txt"))


def read_prompts(path: Path, limit: int | None = None) -> list[str]:
    """The first `limit` prompts of `path` (all when None); blank lines are skipped and
    a prompt that appears twice is kept once (it would be compared twice otherwise)."""
    if not path.is_file():
        raise PreferenceError(f"prompts file {path}: no such file")
    prompts: dict[str, None] = {}  # ordered, without repeats
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            prompt = _prompt_of(path, line_number, line)
            if prompt:
                prompts.setdefault(prompt)
            if limit is not None and len(prompts) >= limit:
                break
    if not prompts:
        raise PreferenceError(f"prompts file {path}: no prompt in it")
    return list(prompts)


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
