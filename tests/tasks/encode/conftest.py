"""Small corpora on disk for the encode tests, written the way users' data arrives."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from benchmarks.varied_text import varied_documents

# Documents that tend to break encoders: the separator written as text, empty and
# whitespace-only documents, scripts and emoji, Windows line ends, a long one.
AWKWARD = [
    "A page that writes <|endoftext|> in its text must not end there.",
    "",
    "   \n\t ",
    "naïve café — 東京 — Ελληνικά — 🙂👍🏽",
    "line one\r\nline two\r\n",
    "word " * 5_000,
]


def save_dataset(folder: Path, texts: list[str], **columns: list) -> Path:
    datasets.Dataset.from_dict({"text": texts, **columns}).save_to_disk(str(folder))
    return folder


def varied_corpus(folder: Path, total_bytes: int, seed: int) -> Path:
    """A corpus folder as the encode flow reads it (dataset/ + corpus.json): `total_bytes`
    of varied text in documents of about 2 KB."""
    texts = varied_documents(total_bytes, seed=seed, doc_bytes=2_000)
    save_dataset(folder / "dataset", texts)
    (folder / "corpus.json").write_text(json.dumps({"fingerprint": "c" * 64}))
    return folder


@pytest.fixture(scope="session")
def documents() -> list[str]:
    """About 300 KB in 80-odd documents: varied text plus the awkward cases, mixed in."""
    texts = varied_documents(300_000, seed=7, doc_bytes=3_000)
    for i, awkward in enumerate(AWKWARD):
        texts.insert(7 * i + 3, awkward)
    return texts


@pytest.fixture
def corpus_dir(tmp_path: Path, documents: list[str]) -> Path:
    """A corpus folder as the corpus flow writes it: corpus.json + dataset/."""
    folder = tmp_path / "corpus"
    save_dataset(
        folder / "dataset", documents, url=[f"http://x/{i}" for i in range(len(documents))]
    )
    summary = {"format": "gpt2lab.corpus", "version": 1, "fingerprint": "f" * 64}
    (folder / "corpus.json").write_text(json.dumps(summary))
    return folder
