"""robots.txt is read once per host per corpus: batches share it through the store."""

from __future__ import annotations

from tasks.corpus.fetch import fetch_batch, fetch_robots, origin_of
from tasks.corpus.links import LinkRules, iter_link_decisions
from tasks.corpus.miniweb import MiniWeb
from tasks.corpus.store import CorpusStore
from tests.tasks.corpus.test_fetch import links, reason, settings


def test_batches_share_robots_through_the_store(tmp_path):
    with MiniWeb(articles=4) as web:
        _share_robots(web, tmp_path)


def _share_robots(web: MiniWeb, tmp_path) -> None:
    urls = tmp_path / "links.txt"
    paths = [*web.articles[:4], web.case("robots_disallowed").path]
    urls.write_text("".join(web.url(path) + "\n" for path in paths))
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(iter_link_decisions([urls], LinkRules()))
        assert store.pending_origins() == [origin_of(web.base_url)]

        fetch_robots(store.pending_origins(), settings(), cache=store)
        assert store.pending_origins() == []  # read and remembered
        first = fetch_batch(links(web, *paths[:2]), settings(), robots_cache=store)
        second = fetch_batch(links(web, *paths[2:]), settings(), robots_cache=store)

    assert web.hits["/robots.txt"] == 1  # once for the corpus, not once per batch
    assert [reason(p) for p in first + second] == ["ok"] * 4 + ["robots_disallowed"]


def test_a_cached_failure_is_kept_too(tmp_path):
    from tasks.corpus.fetch import Outcome
    from tasks.corpus.records import Verdict

    with CorpusStore(tmp_path / "out") as store:
        failure = Verdict("fetch", "http_503", "Service Unavailable")
        store.robots_put(
            "http://a.example:80",
            Outcome("http://a.example:80/robots.txt", status=503, failure=failure),
        )
        cached = store.robots_get("http://a.example:80")
    assert cached.status == 503 and cached.failure == failure
