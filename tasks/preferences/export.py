"""Writing a batch's results to disk: the preference pairs as a Hugging Face dataset (the
`prompt` / `chosen` / `rejected` format that reward-model and DPO trainers read) and every
vote as JSON lines. Written to a temporary folder and renamed into place, so a reader
never sees half an export and a failed export leaves the previous one whole."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset, Features, Value

from tasks.preferences.jsonlines import json_line

PAIR_FEATURES = Features(
    {
        "prompt": Value("string"),
        "chosen": Value("string"),
        "rejected": Value("string"),
        "chosen_model": Value("string"),
        "rejected_model": Value("string"),
        "annotator": Value("string"),
        "item_id": Value("int64"),
        "vote_id": Value("int64"),
    }
)


def export_results(
    folder: Path, pairs: list[dict], votes: list[dict], files: dict[str, str]
) -> Path:
    """Write `pairs/` (a dataset on disk), `votes.jsonl` and the text `files` (name ->
    content) into `folder`, replacing what an earlier export left there."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    columns = {name: [pair[name] for pair in pairs] for name in PAIR_FEATURES}
    Dataset.from_dict(columns, features=PAIR_FEATURES).save_to_disk(str(staging / "pairs"))
    with (staging / "votes.jsonl").open("w", encoding="utf-8") as out:
        for vote in votes:
            out.write(json_line(vote))
    for name, content in files.items():
        (staging / name).write_text(content, encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
