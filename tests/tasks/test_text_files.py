"""A training or dialogue file that is missing or not UTF-8 is one line naming it."""

from __future__ import annotations

import pytest

from tasks.dialogue.data import DialogueDataError, read_dialogue_lines
from tasks.train.checkpoints import TrainingError
from tasks.train.text_data import read_documents


def test_a_missing_file_is_named_with_what_it_was_to_be(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(TrainingError, match=rf"^training data {missing}: no such file$"):
        read_documents(missing)
    with pytest.raises(DialogueDataError, match=rf"^dialogue data {missing}: no such file$"):
        read_dialogue_lines(missing)


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(TrainingError, match=r"latin.jsonl: not UTF-8 text \(byte 13\)$"):
        read_documents(latin)
    with pytest.raises(DialogueDataError, match=r"latin.jsonl: not UTF-8 text \(byte 13\)$"):
        read_dialogue_lines(latin)
