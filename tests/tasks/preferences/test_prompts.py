"""Reading prompts: text lines, JSON lines and saved datasets, with errors that say where."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from tasks.preferences.prompts import DEMO_PROMPTS, read_prompts
from tasks.preferences.store import PreferenceError


def test_text_lines_are_prompts_without_blanks_or_repeats(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("  First prompt\n\nSecond\r\nFirst prompt\nThird\n")
    assert read_prompts(path) == ["First prompt", "Second", "Third"]
    assert read_prompts(path, limit=2) == ["First prompt", "Second"]
    assert len(read_prompts(DEMO_PROMPTS)) == 40


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"prompt": "ok"}\n{"prompt": 3}\n', ":2: field 'prompt' is int, not text"),
        ('{"prompt": "ok"}\n\n{"text": "x"}\n', ":3: field 'prompt' is missing"),
        ('{"prompt": "ok"}\nnot json\n', ":2: not JSON"),
    ],
)
def test_a_bad_json_line_is_named(tmp_path, text, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(text)
    with pytest.raises(PreferenceError, match=message):
        read_prompts(path)


def test_a_saved_dataset_gives_its_prompt_or_text_column(tmp_path):
    Dataset.from_dict({"prompt": ["a", "b", "a"], "x": [1, 2, 3]}).save_to_disk(tmp_path / "p")
    Dataset.from_dict({"text": ["c", "d"]}).save_to_disk(tmp_path / "t")
    Dataset.from_dict({"body": ["e"]}).save_to_disk(tmp_path / "b")
    DatasetDict({"train": Dataset.from_dict({"text": ["f"]})}).save_to_disk(tmp_path / "d")
    assert read_prompts(tmp_path / "p") == ["a", "b"]
    assert read_prompts(tmp_path / "t", limit=1) == ["c"]
    with pytest.raises(PreferenceError, match="no 'prompt' or 'text' column .columns: body"):
        read_prompts(tmp_path / "b")
    with pytest.raises(PreferenceError, match="several splits"):
        read_prompts(tmp_path / "d")


def test_missing_and_empty_sources_are_refused(tmp_path):
    with pytest.raises(PreferenceError, match="no such file or folder"):
        read_prompts(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PreferenceError, match="no prompt in it"):
        read_prompts(tmp_path / "empty.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(PreferenceError, match="not a saved dataset"):
        read_prompts(tmp_path / "folder")
