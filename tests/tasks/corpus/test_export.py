"""The corpus export: the dataset, the manifest, and a fingerprint that tracks content only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest

from tasks.corpus.export import export_corpus
from tasks.corpus.records import Document
from tasks.corpus.store import CorpusStore, content_hash
from tests.tasks.corpus.test_store import NOW, decisions_for, finish_all, ok_page, write_links

COLUMNS = ["url", "title", "text", "karma", "subreddit", "fetched_at", "content_hash"]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return write_links(tmp_path / "links.jsonl", n_kept=6)


@pytest.fixture
def store(tmp_path: Path, inputs: Path) -> Iterator[CorpusStore]:
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(decisions_for(inputs))
        yield store


def test_export(tmp_path: Path, store: CorpusStore) -> None:
    finish_all(store)
    store.mark_duplicates([2], reason="exact_duplicate")
    result = export_corpus(store)
    assert result.dataset_path == tmp_path / "out" / "dataset"
    assert result.n_documents == 5 and result.complete

    dataset = datasets.load_from_disk(str(result.dataset_path))
    assert dataset.column_names == COLUMNS
    rows = dataset.to_list()
    urls = [row["url"] for row in rows]
    assert len(urls) == len(set(urls)) == 5
    assert "https://site2.example/page" not in urls
    assert rows[0] == {
        "url": "https://site0.example/page",
        "title": "T",
        "text": "text of https://site0.example/page",
        "karma": 10,
        "subreddit": "r",
        "fetched_at": NOW,
        "content_hash": content_hash("text of https://site0.example/page"),
    }

    manifest = [json.loads(line) for line in result.manifest_path.read_text().splitlines()]
    assert [row["idx"] for row in manifest] == list(range(8))  # one row per input link
    assert manifest[2]["fate"] == "dropped" and manifest[2]["stage"] == "dedup"
    assert manifest[7] == {
        "idx": 7,
        "source": "links.jsonl:8",
        "raw_url": None,
        "url": None,
        "fate": "dropped",
        "stage": "links",
        "reason": "not_json",
        "detail": "Expecting value: line 1 column 1 (char 0)",
        "http_status": None,
    }
    summary = json.loads(result.corpus_path.read_text())
    assert summary["fingerprint"] == result.fingerprint and summary["n_documents"] == 5
    assert summary["counts"]["dropped.dedup.exact_duplicate"] == 1
    # No temporary folders or files are left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []


def test_fingerprint_is_stable_and_tracks_content(tmp_path: Path, inputs: Path) -> None:
    def build(folder: str, text_of_first: str) -> str:
        with CorpusStore(tmp_path / folder) as store:
            store.add_links(decisions_for(inputs))
            for _, link in store.pending_links():
                store.record_pages([ok_page(link.url)])
            pages = store.fetched_pages(limit=100)
            store.record_results(
                [
                    (idx, Document(link.url, "T", text_of_first if idx == 0 else f"text {idx}"))
                    for idx, link, _ in pages
                ]
            )
            first = export_corpus(store)
            again = export_corpus(store)  # replaces the first export in place
            elsewhere = export_corpus(store, tmp_path / f"{folder}-copy")
            assert first.fingerprint == again.fingerprint == elsewhere.fingerprint
            assert len(datasets.load_from_disk(str(again.dataset_path))) == 6
            return first.fingerprint

    same = build("a", "hello")
    assert build("b", "hello\r\n") == same  # only a line ending differs: same content hash
    assert build("c", "hello, world") != same


def test_export_of_an_unfinished_run(store: CorpusStore) -> None:
    result = export_corpus(store)
    assert (result.n_documents, result.complete) == (0, False)
    assert datasets.load_from_disk(str(result.dataset_path)).column_names == COLUMNS
    fates = [json.loads(line)["fate"] for line in result.manifest_path.read_text().splitlines()]
    assert fates.count("pending") == 6
