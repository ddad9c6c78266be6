"""The persona-chat text layout, and reading the dataset's two file layouts into it."""

from __future__ import annotations

import json

import pytest

from tasks.dialogue.data import DialogueDataError, read_dialogue_lines, training_texts
from tasks.dialogue.format import build_input, build_prompt, cut_reply, fit_history
from tasks.train.checkpoints import TrainingError
from tasks.train.text_data import read_documents

PERSONA = ["I have a cat.", "I work\nnights."]


def test_the_prompt_is_persona_then_alternating_turns_ending_with_the_models_cue():
    prompt = build_prompt(PERSONA, ["Hi! Pets?", "Yes, a cat.", "Nice. Job?"])
    assert prompt == (
        "Persona: I have a cat. I work nights.\n"
        "Them: Hi! Pets?\n"
        "You: Yes, a cat.\n"
        "Them: Nice. Job?\n"
        "You:"
    )
    # The last turn is always the other person's, whatever the history's length.
    assert build_prompt([], ["Hello", "Hi there, I am Sam.", "Hi Sam!", "So?"]).startswith(
        "You: Hello\nThem: Hi there"
    )
    assert build_input(PERSONA, ["Job?"], "I am a\nnurse.").endswith("You: I am a nurse.\n")


def test_a_generated_reply_is_its_first_line():
    assert cut_reply(" I am a nurse.\nThem: Cool.\nYou: Yes") == "I am a nurse."


def _dialogue() -> dict:
    return {
        "personality": PERSONA,
        "utterances": [
            {"candidates": ["No.", "Yes, a cat."], "history": ["Pets?"]},
            {"candidates": ["Yes.", "Nurse."], "history": ["Pets?", "Yes, a cat.", "Job?"]},
        ],
    }


def test_both_layouts_read_into_the_same_turns_and_a_dialogue_is_one_document(tmp_path):
    nested = tmp_path / "dialogues.jsonl"
    nested.write_text(json.dumps(_dialogue()) + "\n")
    flat = tmp_path / "turns.jsonl"
    rows = [{"personality": PERSONA, **u, "conv_id": 0} for u in _dialogue()["utterances"]]
    flat.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert read_dialogue_lines(nested)[0] == [t for (t,) in read_dialogue_lines(flat)]
    # The whole dialogue teaches both replies in one document, ending with the last.
    (document,) = training_texts(nested)
    assert "You: Yes, a cat.\nThem: Job?\nYou: Nurse.\n" in document
    assert len(training_texts(flat)) == 2  # a row is one turn
    assert read_documents(nested, "persona-chat") == [document]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"d.jsonl:2: not JSON"),
        ('{"personality": [], "utterances": []}', r"d.jsonl:2: field 'utterances' must be"),
        (
            '{"personality": ["x"], "utterances": [{"candidates": [], "history": []}]}',
            r"d.jsonl:2: utterance 1: field 'candidates' is empty",
        ),
        ('{"personality": "I am", "candidates": ["x"], "history": []}', r"'personality' is not"),
    ],
)
def test_bad_dialogue_lines_are_named_by_file_and_line(tmp_path, line, message):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(_dialogue()) + "\n" + line + "\n")
    with pytest.raises(DialogueDataError, match=message):
        read_dialogue_lines(data)
    with pytest.raises(TrainingError, match=message):  # what `finetune` reports
        read_documents(data, "persona-chat")


def test_the_oldest_turns_go_first_when_the_prompt_must_shrink():
    history = ["one one one", "two", "three three", "four"]

    def fits_in(limit):
        return lambda prompt: len(prompt) <= limit

    everything = build_prompt(PERSONA, history)
    assert fit_history(PERSONA, history, fits_in(len(everything))) == history
    assert fit_history(PERSONA, history, fits_in(len(everything) - 1)) == history[1:]
    last_only = build_prompt(PERSONA, history[-1:])
    assert fit_history(PERSONA, history, fits_in(len(last_only))) == ["four"]
    assert fit_history(PERSONA, history, fits_in(len(last_only) - 1)) == []  # nothing fits
