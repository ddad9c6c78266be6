"""Fine-tuning data from a plain file: encoded on the fly with the model's tokenizer.

A style corpus (a poet's work, a project's docs, a set of recipes) is often one small
file. `tokens_from_text_file` turns it into a tokens folder like the encode flow's, so
training reads it the same way:

- `.jsonl`: one JSON object per line, its "text" field one document;
- any other file (`.txt`, `.md`, ...): UTF-8 text, documents separated by blank lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from model.atomic_files import write_file_atomically, write_folder_atomically
from tasks.encode.corpus_source import open_corpus
from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus
from tasks.fingerprint import fingerprint_file
from tasks.train.checkpoints import TrainingError

TOKENIZER_FILES = ("encoder.json", "vocab.json")


def read_documents(path: Path) -> list[str]:
    """The documents of a .jsonl or plain-text file; TrainingError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"training data {path}: no such file") from None
    except UnicodeDecodeError as error:
        raise TrainingError(f"{path}: not UTF-8 text (byte {error.start})") from None
    if path.suffix != ".jsonl":
        documents = [part.strip() for part in text.split("\n\n")]
        return [document for document in documents if document]
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise TrainingError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise TrainingError(f'{path}:{number}: expected an object with a "text" string')
        documents.append(record["text"])
    return documents


def tokenizer_for(init_from: str | None, fallback: str) -> str:
    """The model's own tokenizer when its folder holds one, else `fallback`."""
    if init_from and any((Path(init_from) / name).is_file() for name in TOKENIZER_FILES):
        return init_from
    return fallback


def tokens_from_text_file(path: Path, tokenizer: str, out: Path, val_fraction: float = 0.1) -> Path:
    """Encode the documents of `path` into `out/tokens` (reused when already there for the
    same file and tokenizer: the encode flow checks its plan)."""
    documents = read_documents(path)
    if not documents:
        raise TrainingError(f"training data {path}: no documents")
    # The dataset is written once per run folder (a rewrite would get new Arrow files and
    # a new fingerprint); a changed data file is caught by its recorded SHA-256 instead.
    record, digest = out / "data-source.json", fingerprint_file(path)
    if record.is_file() and json.loads(record.read_text())["sha256"] != digest:
        raise TrainingError(
            f"{out} was prepared from another version of {path}: use a new run folder"
        )
    dataset_dir = out / "dataset"
    if not dataset_dir.exists():
        write_folder_atomically(
            dataset_dir,
            lambda tmp: datasets.Dataset.from_dict({"text": documents}).save_to_disk(str(tmp)),
        )
        write_file_atomically(record, json.dumps({"file": str(path), "sha256": digest}))
    encode_corpus(
        open_corpus(dataset_dir),
        out / "tokens",
        TokenizerChoice(tokenizer=tokenizer),
        EncodeSettings(val_fraction=val_fraction),
    )
    return out / "tokens"
