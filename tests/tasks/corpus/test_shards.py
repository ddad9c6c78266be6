"""Shards: cut by host, written where any worker reaches them, done exactly when marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.corpus.links import LinkRules, iter_link_decisions
from tasks.corpus.records import Document, Page
from tasks.corpus.shards import (
    DONE_FILE,
    Location,
    ShardError,
    finish_shard,
    planned_shards,
    read_marker,
    read_shard_input,
    shard_documents,
    shard_fates,
    shard_of,
    write_shard_inputs,
)
from tasks.corpus.store import CorpusStore, StoreError

URLS = [
    "https://a.example/1",
    "https://b.example/1",
    "https://a.example/2",
    "https://c.example:8443/1",
    "https://b.example/2",
    "https://a.example/3",
]


def _run_store(tmp_path: Path) -> CorpusStore:
    links = tmp_path / "links.txt"
    links.write_text("\n".join(URLS) + "\n")
    store = CorpusStore(tmp_path / "run")
    store.add_links(iter_link_decisions([links], LinkRules(min_score=0)))
    return store


def test_every_link_of_a_host_lands_in_the_same_shard_on_every_machine():
    assert shard_of("https://a.example/1", 7) == shard_of("https://A.example/other?q", 7)
    # A stable hash, not Python's per-process salted hash(): every machine agrees.
    assert [shard_of(f"https://host{i}.example/x", 1000) for i in range(3)] == [216, 663, 253]
    assert len({shard_of(f"https://host{i}.example/", 8) for i in range(64)}) == 8
    assert shard_of("not a url", 8) in range(8)


@pytest.mark.parametrize("kind", ["path", "file-url", "object-store"])
def test_shard_inputs_results_and_marker_round_trip(tmp_path, kind, monkeypatch):
    monkeypatch.setattr("tasks.corpus.shards._WRITE_BATCH", 2)  # files of several row groups
    store = _run_store(tmp_path)
    shared = tmp_path / "shared"
    # fsspec's in-memory file system stands for s3:// (no object store is reachable in
    # tests): no rename, so no temporary names, and the shard works in a scratch folder.
    urls = {"path": shared, "file-url": shared.as_uri(), "object-store": f"memory:/{shared}"}
    location = Location(urls[kind])
    assert location.local == (kind != "object-store")
    if not location.local:
        scratch = location.work_dir(0).parent
        assert not scratch.is_relative_to(shared)
        (tmp_path / "scratch").mkdir()
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
        assert location.work_dir(0).is_relative_to(tmp_path / "scratch")

    todo = write_shard_inputs(store, location, n_shards=4)
    assert todo == planned_shards(location)
    by_shard = {s: [idx for idx, _ in read_shard_input(location, s)] for s in todo}
    assert sorted(i for ids in by_shard.values() for i in ids) == list(range(len(URLS)))
    for ids in by_shard.values():  # each shard's links in input order
        assert ids == sorted(ids)
    host_shards = {URLS[i].split("/")[2]: s for s, ids in by_shard.items() for i in ids}
    assert len(host_shards) == 3

    # One shard worked in its own store: one page kept, the others failed.
    shard = host_shards["a.example"]
    numbered = read_shard_input(location, shard)
    with CorpusStore(location.work_dir(shard)) as work:
        work.add_links(decision for _, decision in numbered)
        for _, decision in numbered:
            assert decision.link is not None
            work.record_page(
                Page(decision.link.url, None, 200, "text/html", b"<p>x</p>", "2026-01-01")
            )
        first = numbered[0][1].link.url
        work.record_results([(first, Document(first, "T", "a text"))])
        work.record_results([(d.link.url, _dropped()) for _, d in numbered[1:]])
        assert read_marker(location, shard) is None
        kept = finish_shard(location, shard, work, [idx for idx, _ in numbered])
    assert kept == 1
    assert read_marker(location, shard) == {"links": 3, "kept": 1}
    assert write_shard_inputs(store, location, n_shards=4) == [s for s in todo if s != shard]
    assert not list(shared.rglob("*.tmp-*"))  # nothing left half-written

    # The run's store takes the shard's outcomes back under their global idx, once.
    fates = list(shard_fates(location, shard))
    assert [f.idx for f in fates] == [0, 2, 5]
    assert store.record_shard_results(fates, shard_documents(location, shard)) == 3
    assert store.record_shard_results(fates, []) == 0
    assert [d.idx for d in store.iter_documents()] == [0]
    assert store.counts()["pending"] == len(URLS) - 3


def test_a_resumed_run_with_another_shard_count_is_refused(tmp_path):
    store = _run_store(tmp_path)
    location = Location(tmp_path / "shared")
    write_shard_inputs(store, location, n_shards=4)
    with pytest.raises(ShardError, match=r"plan\.json: this run was cut into 4 shards"):
        write_shard_inputs(store, location, n_shards=5)


def test_results_of_another_run_are_refused(tmp_path):
    store = _run_store(tmp_path)
    location = Location(tmp_path / "shared")
    shard = write_shard_inputs(store, location, n_shards=1)[0]
    numbered = read_shard_input(location, shard)
    with CorpusStore(location.work_dir(shard)) as work:
        work.add_links(decision for _, decision in numbered)
        work.record_results([(d.link.url, _dropped()) for _, d in numbered if d.link])
        ids = [idx + 100 for idx, _ in numbered]  # not this run's links
        finish_shard(location, shard, work, ids)
    with pytest.raises(StoreError, match="the shards come from another run"):
        store.record_shard_results(shard_fates(location, shard), [])
    assert store.counts()["pending"] == len(URLS)  # nothing was written


def test_a_shard_with_links_still_pending_is_not_marked_done(tmp_path):
    store = _run_store(tmp_path)
    location = Location(tmp_path / "shared")
    shard = write_shard_inputs(store, location, n_shards=1)[0]
    numbered = read_shard_input(location, shard)
    with CorpusStore(location.work_dir(shard)) as work:
        work.add_links(decision for _, decision in numbered)
        with pytest.raises(ShardError, match="still pending"):
            finish_shard(location, shard, work, [idx for idx, _ in numbered])
    assert not Path(location.shard_path(shard, DONE_FILE)).exists()


def _dropped():
    from tasks.corpus.records import Verdict

    return Verdict("filter", "too_short", "")


def test_results_the_flow_cannot_see_are_a_clear_error(tmp_path):
    # As when workers wrote `shared` on their own disks: the tasks ended, no marker is here.
    from tasks.corpus.process import collect_shards

    with _run_store(tmp_path) as store:
        shard = write_shard_inputs(store, Location(tmp_path / "shared"), n_shards=1)[0]
    with pytest.raises(ShardError, match=f"shard {shard} finished but its results are not here"):
        collect_shards(tmp_path / "run", str(tmp_path / "shared"))


@pytest.mark.parametrize("kind", ["path", "memory"])
def test_dedup_across_signed_shards_equals_dedup_of_their_documents_in_order(
    tmp_path, kind, monkeypatch
):
    """The flow's dedup reads the shards' published signatures; with none (or from other
    settings) it streams their documents: both give `find_duplicates`'s verdicts."""
    import random

    from tasks.corpus import shards as shard_module
    from tasks.corpus.dedup import DedupSettings, find_duplicates
    from tasks.corpus.shards import (
        _DOCUMENT_SCHEMA,
        DOCUMENTS_FILE,
        Location,
        _write_parquet,
        find_shard_duplicates,
        publish_signatures,
    )

    url = str(tmp_path / "shared") if kind == "path" else f"memory://dedup-{tmp_path.name}"
    location = Location(url)
    rng = random.Random(3)
    words = [f"w{n}" for n in range(400)]
    texts = [" ".join(rng.choices(words, k=120)) for _ in range(150)]
    texts += [text.upper() for text in texts[:20]]  # exact copies
    texts += [text.replace("w1 ", "w2 ", 1) + " tail" for text in texts[20:50]]  # near copies
    order = list(range(len(texts)))
    rng.shuffle(order)  # documents' idx spread over the shards, as hosts spread them
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for idx, text_number in enumerate(order):
        by_shard.setdefault(idx % 4, []).append((idx, texts[text_number]))
    settings = DedupSettings()
    for shard, documents in by_shard.items():
        rows = [
            {"idx": i, "url": f"https://h{shard}.example/{i}", "title": None, "text": t,
             "karma": None, "subreddit": None, "fetched_at": None, "content_hash": str(i)}
            for i, t in documents
        ]  # fmt: skip
        _write_parquet(location, location.shard_path(shard, DOCUMENTS_FILE), _DOCUMENT_SCHEMA, rows)
    expected = find_duplicates(sorted(d for docs in by_shard.values() for d in docs), settings)
    assert len(expected) >= 40  # the copies were found

    shards = sorted(by_shard)
    streamed = find_shard_duplicates(location, shards, settings)  # no signatures yet
    for shard, documents in by_shard.items():
        publish_signatures(location, shard, documents, settings)
    used = []
    real = shard_module.find_duplicates_across_shards
    monkeypatch.setattr(
        shard_module,
        "find_duplicates_across_shards",
        lambda paths, s: used.append(len(paths)) or real(paths, s),
    )
    signed = find_shard_duplicates(location, shards, settings)
    other = find_shard_duplicates(location, shards, DedupSettings(threshold=0.7))
    assert used == [4]  # the signatures were used, and not for other settings
    assert streamed == signed == expected
    assert other == find_duplicates(
        sorted(d for docs in by_shard.values() for d in docs), DedupSettings(threshold=0.7)
    )
