"""Fine-tuning data from a plain file: encoded on the fly with the model's tokenizer.

A style corpus (a poet's work, a project's docs, a set of recipes) is often one small
file. `tokens_from_text_file` turns it into a tokens folder like the encode flow's, so
training reads it the same way:

- `.jsonl`: one JSON object per line, its "text" field one document;
- any other file (`.txt`, `.md`, ...): UTF-8 text, documents separated by blank lines;
- with `format="persona-chat"`: a `.jsonl` of PERSONA-CHAT dialogues (the real dataset's
  layout, `tasks/dialogue/data.py`), each turned into persona + history + reply text
  (`tasks/dialogue/format.py`), the layout the `personachat` eval task and `gpt2lab
  chat` read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import datasets

from model.atomic_files import write_file_atomically, write_folder_atomically
from tasks.dialogue.data import DialogueDataError, training_texts
from tasks.encode.corpus_source import open_corpus
from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus
from tasks.fingerprint import fingerprint_file
from tasks.text_files import json_lines, read_text_file
from tasks.train.checkpoints import TrainingError

TOKENIZER_FILES = ("encoder.json", "vocab.json")
DataFormat = Literal["text", "persona-chat"]
DATA_FORMATS: tuple[DataFormat, ...] = ("text", "persona-chat")


def read_documents(path: Path, format: DataFormat = "text") -> list[str]:
    """The documents of a .jsonl or plain-text file (`format="text"`) or of a dialogue
    file (`"persona-chat"`); TrainingError naming file and line."""
    if format == "persona-chat":
        try:
            return training_texts(path)
        except DialogueDataError as error:
            raise TrainingError(str(error)) from None
    if format != "text":
        raise TrainingError(f"training data {path}: unknown format {format!r}")
    text = read_text_file(path, "training data", TrainingError)
    if path.suffix != ".jsonl":
        documents = [part.strip() for part in text.split("\n\n")]
        return [document for document in documents if document]
    documents = []
    for where, record in json_lines(path, text, TrainingError):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise TrainingError(f'{where}: expected an object with a "text" string')
        documents.append(record["text"])
    return documents


def tokenizer_for(init_from: str | None, fallback: str) -> str:
    """The model's own tokenizer when its folder holds one, else `fallback`."""
    if init_from and any((Path(init_from) / name).is_file() for name in TOKENIZER_FILES):
        return init_from
    return fallback


def tokens_from_text_file(
    path: Path,
    tokenizer: str,
    out: Path,
    val_fraction: float = 0.1,
    format: DataFormat = "text",
) -> Path:
    """Encode the documents of `path` (read as `format`) into `out/tokens` (reused when
    already there for the same file and tokenizer: the encode flow checks its plan)."""
    documents = read_documents(path, format)
    if not documents:
        raise TrainingError(f"training data {path}: no documents")
    # The dataset is written once per run folder (a rewrite would get new Arrow files and
    # a new fingerprint); a changed data file or format is caught by the record instead.
    record, digest = out / "data-source.json", fingerprint_file(path)
    if record.is_file():
        prepared = json.loads(record.read_text())
        if prepared["sha256"] != digest:
            raise TrainingError(
                f"{out} was prepared from another version of {path}: use a new run folder"
            )
        if prepared.get("format", "text") != format:
            raise TrainingError(
                f"{out} was prepared from {path} read as {prepared.get('format', 'text')!r}, "
                f"not {format!r}: use a new run folder"
            )
    dataset_dir = out / "dataset"
    if not dataset_dir.exists():
        write_folder_atomically(
            dataset_dir,
            lambda tmp: datasets.Dataset.from_dict({"text": documents}).save_to_disk(str(tmp)),
        )
        write_file_atomically(
            record, json.dumps({"file": str(path), "sha256": digest, "format": format})
        )
    encode_corpus(
        open_corpus(dataset_dir),
        out / "tokens",
        TokenizerChoice(tokenizer=tokenizer),
        EncodeSettings(val_fraction=val_fraction),
    )
    return out / "tokens"
