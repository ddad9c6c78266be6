"""The corpus state store: idempotent intake, crash-safe resume, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.corpus.links import LinkDecision, iter_link_decisions
from tasks.corpus.records import Document, Page, Verdict
from tasks.corpus.store import CorpusStore, StoreError, causes, content_hash

NOW = "2024-05-01T12:00:00+00:00"


def write_links(path: Path, n_kept: int) -> Path:
    """A dump with `n_kept` good links, plus one low-score link and one bad line after them."""
    lines = [
        json.dumps({"url": f"https://site{n}.example/page", "score": 10 + n, "subreddit": "r"})
        for n in range(n_kept)
    ]
    lines += [json.dumps({"url": "https://low.example/", "score": 0}), "not json"]
    path.write_text("\n".join(lines) + "\n")
    return path


def decisions_for(path: Path) -> list[LinkDecision]:
    return list(iter_link_decisions([path]))


def ok_page(url: str, body: bytes = b"<html><p>hello</p></html>") -> Page:
    return Page(url, final_url=url, status=200, content_type="text/html", body=body, fetched_at=NOW)


def failed_page(url: str, status: int | None = 404) -> Page:
    reason = f"http_{status}" if status else "timeout"
    return Page(url, url, status, None, None, NOW, failure=Verdict("fetch", reason))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return write_links(tmp_path / "links.jsonl", n_kept=6)


@pytest.fixture
def store(tmp_path: Path, inputs: Path) -> Iterator[CorpusStore]:
    store = CorpusStore(tmp_path / "out")
    store.add_links(decisions_for(inputs))
    yield store
    store.close()


def finish_all(store: CorpusStore) -> None:
    """Fetch and extract every pending link: text "text of <url>" (a stand-in pipeline)."""
    for _, link in store.pending_links():
        store.record_pages([ok_page(link.url)])
    results = [
        (idx, Document(link.url, "T", f"text of {link.url}"))
        for idx, link, _ in store.fetched_pages(limit=100)
    ]
    store.record_results(results)


# ---------------------------------------------------------------------------------------------
# links


def test_add_links_is_idempotent(tmp_path: Path, inputs: Path) -> None:
    with CorpusStore(tmp_path / "out") as store:
        assert store.add_links(decisions_for(inputs)) == 8
        before = store.counts()
        assert store.add_links(decisions_for(inputs)) == 8
        assert store.counts() == before
    assert before == {
        "total": 8,
        "kept": 0,
        "dropped": 2,
        "failed": 0,
        "pending": 6,
        "fetched": 0,
        "dropped.links.low_score": 1,
        "dropped.links.not_json": 1,
    }


def test_add_links_resumes_a_half_written_intake(tmp_path: Path, inputs: Path) -> None:
    decisions = decisions_for(inputs)
    with CorpusStore(tmp_path / "out") as store:
        store._add_chunk(list(enumerate(decisions))[:3], None)  # a crash after one chunk
    with CorpusStore(tmp_path / "out") as store:
        assert store.add_links(decisions) == 8
        assert [record.idx for record in store.fates()] == list(range(8))


def test_changed_inputs_are_refused(tmp_path: Path, inputs: Path) -> None:
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(decisions_for(inputs))
        before = list(store.fates())
        original = inputs.read_text()
        inputs.write_text(original.replace("site3", "elsewhere"))
        with pytest.raises(StoreError, match=r"state\.sqlite: link 3 was recorded as links"):
            store.add_links(decisions_for(inputs))
        longer = write_links(tmp_path / "links.jsonl", n_kept=7)
        with pytest.raises(StoreError, match="recorded 8 input links, the input now has at least"):
            store.add_links(decisions_for(longer))
        inputs.write_text("".join(original.splitlines(keepends=True)[:7]))  # cut short
        with pytest.raises(StoreError, match="recorded 8 input links, the input now has 7"):
            store.add_links(decisions_for(inputs))
        assert list(store.fates()) == before  # nothing was written


def test_pending_links_in_input_order_and_paged(store: CorpusStore) -> None:
    first = store.pending_links(limit=4)
    assert [idx for idx, _ in first] == [0, 1, 2, 3]
    assert first[0][1].url == "https://site0.example/page"
    assert first[0][1].karma == 10 and first[0][1].source == "links.jsonl:1"
    nxt = store.pending_links(limit=4, after=first[-1][0])
    assert [idx for idx, _ in nxt] == [4, 5]


# ---------------------------------------------------------------------------------------------
# pages, results, resume


def test_resume_never_refetches_a_recorded_url(tmp_path: Path, store: CorpusStore) -> None:
    links = dict(store.pending_links())
    store.record_pages([ok_page(links[0].url, b"<p>zero</p>"), failed_page(links[1].url)])
    store.record_pages([ok_page(links[2].url)])
    store.record_results([(2, Document(links[2].url, "two", "Two."))])
    store.close()  # "crash": batch 0 was fetched but never extracted

    reopened = CorpusStore(tmp_path / "out")
    assert [idx for idx, _ in reopened.pending_links()] == [3, 4, 5]
    ((idx, link, page),) = reopened.fetched_pages()
    assert (idx, link.url, page.body, page.status) == (0, links[0].url, b"<p>zero</p>", 200)
    assert page.fetched_at == NOW and page.content_type == "text/html"
    # A page delivered again, or a replayed result, changes nothing.
    assert reopened.record_pages([ok_page(links[1].url)]) == 0
    assert reopened.record_results([(2, Verdict("filter", "too_short"))]) == 0
    assert reopened.record_results([(links[0].url, Verdict("extract", "no_text"))]) == 1
    assert reopened.fetched_pages() == []
    counts = reopened.counts()
    assert counts["failed.fetch.http_404"] == 1
    assert counts["dropped.extract.no_text"] == 1
    assert (counts["kept"], counts["pending"], counts["fetched"]) == (1, 3, 0)
    # The per-cause entries, taken apart for the drop-reason table.
    assert {(c.fate, c.stage, c.reason, c.count) for c in causes(counts)} == {
        ("dropped", "links", "not_json", 1),
        ("dropped", "links", "low_score", 1),
        ("failed", "fetch", "http_404", 1),
        ("dropped", "extract", "no_text", 1),
    }
    reopened.close()


def test_bodies_are_deleted_once_processed(store: CorpusStore) -> None:
    ((idx, link),) = store.pending_links(limit=1)
    store.record_pages([ok_page(link.url, b"x" * 100_000)])
    assert store._query("SELECT COUNT(*) FROM bodies")[0][0] == 1
    store.record_results([(idx, Document(link.url, None, "text"))])
    assert store._query("SELECT COUNT(*) FROM bodies")[0][0] == 0


def test_robots_refusal_is_dropped_not_failed(store: CorpusStore) -> None:
    ((_, link),) = store.pending_links(limit=1)
    page = Page(link.url, None, None, None, None, NOW, Verdict("robots", "robots_disallowed"))
    store.record_pages([page])
    assert store.counts()["dropped.robots.robots_disallowed"] == 1


def test_a_bad_record_rolls_back_its_whole_call(store: CorpusStore) -> None:
    ((_, link),) = store.pending_links(limit=1)
    with pytest.raises(StoreError, match="no link to fetch has the URL 'https://nowhere/'"):
        store.record_pages([ok_page(link.url), ok_page("https://nowhere/")])
    assert store.counts()["fetched"] == 0
    with pytest.raises(StoreError, match="no page was recorded"):
        store.record_results([(0, Document(link.url, None, "text"))])
    with pytest.raises(StoreError, match="no link has idx 99"):
        store.record_results([(99, Verdict("filter", "x"))])


KILL_SCRIPT = """
import sys
from tasks.corpus.records import Page
from tasks.corpus.store import CorpusStore

store = CorpusStore(sys.argv[1])
for idx, link in store.pending_links(limit=10_000):
    page = Page(link.url, link.url, 200, "text/html", b"<p>%d</p>" % idx * 500, "t")
    store.record_page(page)  # as the fetcher's on_page callback
    print(idx, flush=True)
"""


def test_sigkill_mid_fetch_loses_nothing_recorded(tmp_path: Path) -> None:
    inputs = write_links(tmp_path / "links.jsonl", n_kept=3000)
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(decisions_for(inputs))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        text=True,
    )
    reported = [int(child.stdout.readline()) for _ in range(50)]
    child.send_signal(signal.SIGKILL)
    child.wait()
    with CorpusStore(tmp_path / "out") as store:
        fetched = {idx for idx, _, _ in store.fetched_pages(limit=10_000)}
        pending = {idx for idx, _ in store.pending_links(limit=10_000)}
        assert set(reported) <= fetched  # every page the child had committed is there
        assert fetched.isdisjoint(pending) and fetched | pending == set(range(3000))
        assert 0 < len(fetched) < 3000
        assert store._query("PRAGMA integrity_check")[0][0] == "ok"


def _record_half(folder: str, parity: int) -> None:
    """Worker: record every other pending page, one transaction per page."""
    store = pickle.loads(pickle.dumps(CorpusStore(folder)))  # as Dask would ship it
    for idx, link in store.pending_links(limit=10_000):
        if idx % 2 == parity:
            store.record_pages([ok_page(link.url)])
    store.close()


def test_two_processes_write_without_losing_rows(tmp_path: Path) -> None:
    inputs = write_links(tmp_path / "links.jsonl", n_kept=300)
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(decisions_for(inputs))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_record_half, args=(str(tmp_path / "out"), parity))
        for parity in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    with CorpusStore(tmp_path / "out") as store:
        assert store.counts()["fetched"] == 300
        assert store.pending_links() == []


# ---------------------------------------------------------------------------------------------
# documents and dedup


def test_mark_duplicates(store: CorpusStore) -> None:
    finish_all(store)
    changed = store.mark_duplicates([1, 3, 7], reason="near_duplicate", detail={3: "like 0"})
    assert changed == 2  # idx 7 is a dropped link, not a kept document
    assert [doc.idx for doc in store.iter_documents(batch_size=2)] == [0, 2, 4, 5]
    fates = {record.idx: record for record in store.fates()}
    assert (fates[3].fate, fates[3].stage, fates[3].reason) == (
        "dropped",
        "dedup",
        "near_duplicate",
    )
    assert fates[3].detail == "like 0" and fates[1].detail == ""
    assert store.counts()["dropped.dedup.near_duplicate"] == 2


def test_content_hash_normalises_cosmetics_only() -> None:
    assert content_hash("caf\u00e9\r\nline  \n\n") == content_hash("cafe\u0301\nline")
    assert content_hash("a b") != content_hash("a  b")


# ---------------------------------------------------------------------------------------------
# opening


def test_corrupt_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as error:
        CorpusStore(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'state.sqlite'} is not a usable gpt2lab corpus")
    assert "\n" not in message


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match=r"state\.sqlite is an SQLite database that gpt2lab"):
        CorpusStore(tmp_path)


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    CorpusStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="has state schema version 99, this gpt2lab reads"):
        CorpusStore(tmp_path)


def test_pickled_store_reopens_its_file(store: CorpusStore) -> None:
    copy = pickle.loads(pickle.dumps(store))
    assert copy.path == store.path and copy.counts() == store.counts()
    copy.close()


def test_unfinished_ids_are_pending_and_fetched_links(tmp_path):
    from tasks.corpus.links import LinkRules, iter_link_decisions
    from tasks.corpus.records import Page

    urls = tmp_path / "links.txt"
    urls.write_text("".join(f"https://example.org/{i}\n" for i in range(4)))
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(iter_link_decisions([urls], LinkRules()))
        store.record_page(Page("https://example.org/1", None, 200, "text/html", b"<p>x</p>", ""))
        store.record_page(failed_page("https://example.org/2", status=404))
        # 0 and 3 never fetched, 1 fetched but not extracted, 2 finished (failed).
        assert store.unfinished_ids() == [0, 1, 3]
