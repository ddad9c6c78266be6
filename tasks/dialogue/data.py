"""Reading PERSONA-CHAT files: the real dataset's two layouts, one JSON object a line.

- A dialogue (ConvAI2, as Hugging Face's `personachat_self_original.json` holds it):
  `{"personality": [...], "utterances": [{"candidates": [...], "history": [...]}, ...]}`,
  one entry in `utterances` per reply of the persona's owner.
- A turn (the hub's `bavard/personachat_truecased`, one row per reply):
  `{"personality": [...], "candidates": [...], "history": [...], ...}`.

In both, `history` is the conversation before the reply (the other person's turn last)
and the **last** candidate is the reply that was actually written; the others are
distractors, replies taken from other dialogues.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import Gpt2labError
from tasks.dialogue.format import build_input
from tasks.text_files import json_lines, read_text_file


class DialogueDataError(Gpt2labError):
    """A dialogue file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class Turn:
    """One reply to predict: who the model is, what was said, and the candidates (the
    gold reply last)."""

    persona: list[str]
    history: list[str]
    candidates: list[str]

    @property
    def reply(self) -> str:
        return self.candidates[-1]


def _texts(record: Mapping[str, Any], name: str, where: str) -> list[str]:
    value = record.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problem = "is missing" if value is None else "is not a list of text"
        raise DialogueDataError(f"{where}: field {name!r} {problem}")
    return list(value)


def turn_from_record(record: Mapping[str, Any], where: str) -> Turn:
    """A turn from a hub-layout row (`personality`, `candidates`, `history`)."""
    candidates = _texts(record, "candidates", where)
    if not candidates:
        raise DialogueDataError(f"{where}: field 'candidates' is empty (the reply is its last)")
    return Turn(_texts(record, "personality", where), _texts(record, "history", where), candidates)


def turns_of(record: Any, where: str) -> list[Turn]:
    """The turns of one line of either layout, in order."""
    if not isinstance(record, dict):
        raise DialogueDataError(f"{where}: expected a JSON object")
    if "utterances" not in record:
        return [turn_from_record(record, where)]
    utterances = record["utterances"]
    if not isinstance(utterances, list) or not utterances:
        raise DialogueDataError(f"{where}: field 'utterances' must be a non-empty list")
    persona = _texts(record, "personality", where)
    turns = []
    for number, utterance in enumerate(utterances, start=1):
        at = f"{where}: utterance {number}"
        if not isinstance(utterance, dict):
            raise DialogueDataError(f"{at}: expected a JSON object")
        turns.append(turn_from_record({"personality": persona, **utterance}, at))
    return turns


def read_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, JSON object) for each non-empty line of `path`."""
    text = read_text_file(path, "dialogue data", DialogueDataError)
    return json_lines(path, text, DialogueDataError)


def read_dialogue_lines(path: Path) -> list[list[Turn]]:
    """The turns of each line of a `.jsonl` file of either layout."""
    return [turns_of(record, where) for where, record in read_lines(path)]


def training_texts(path: Path) -> list[str]:
    """Fine-tuning documents from a dialogue file: persona + history + gold reply.

    A whole dialogue (the ConvAI2 layout) gives one document, built from its last turn:
    that turn's history already holds every earlier reply, so the document teaches all of
    them once, instead of repeating the dialogue's opening in a document per reply. A
    hub-layout row is one turn, so one document."""
    documents = []
    for turns in read_dialogue_lines(path):
        last = turns[-1]
        documents.append(build_input(last.persona, last.history, last.reply))
    return documents
