"""A small tokens folder to train on: English text that ships with Python, a small BPE."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from tasks.encode.corpus_source import open_corpus
from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus

VOCAB = 512


def python_help_texts() -> list[str]:
    """pydoc's topic pages (about 700 KB of English prose and code), one per document."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    datasets.Dataset.from_dict({"text": python_help_texts()}).save_to_disk(str(root / "corpus"))
    encode_corpus(
        open_corpus(root / "corpus"),
        root / "tokens",
        TokenizerChoice(train_tokenizer=True, vocab_size=VOCAB),
        EncodeSettings(val_fraction=0.1, shard_mb=0.2),
    )
    return root / "tokens"
