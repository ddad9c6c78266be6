"""Every URL form a dump can hold gets a fate, and none ends a run.

A link dump is millions of lines written by strangers: IPv6 literals with and without
ports, Unicode host names, user names and passwords, ports out of range, percent signs,
control characters, megabyte-long "URLs", lone surrogates in the JSON. Each one must come
out of the link rules as a URL to fetch or a refusal with its reason, and nothing after the
link rules (the store, robots.txt, the fetcher) may raise on a URL the rules kept.

The examples pin the forms known to matter; the property tests (hypothesis, derandomised
so that every run tries the same inputs) throw generated and adversarial URLs at intake,
normalisation, origin and robots.txt URL building, and fetch planning. Tests that put
URLs through the fetcher run in a loopback-only network namespace, with a mock transport
on top: no packet can leave the machine even if the code under test were wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from tasks.corpus import fetch
from tasks.corpus.fetch import (
    FetchSettings,
    Outcome,
    fetch_batch,
    fetch_pages,
    fetch_robots,
    origin_of,
    robots_url,
    url_refusal,
)
from tasks.corpus.links import (
    MAX_URL_CHARS,
    LinkRules,
    iter_link_decisions,
    normalize_or_refuse,
)
from tasks.corpus.miniweb import MiniWeb
from tasks.corpus.process import plan_batches
from tasks.corpus.records import Link, Verdict
from tasks.corpus.store import CorpusStore
from tests.tasks.corpus.netns import loopback_only

# Modest and repeatable: the same examples on every run and machine, a few seconds each.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Every refusal the fetcher can give a URL it was handed (internal_error is a bug).
FETCH_REASONS = {
    "invalid_url",
    "private_address",
    "robots_disallowed",
    "robots_unreachable",
    "redirect_loop",
    "too_many_redirects",
    "not_html",
    "timeout",
    "connection_error",
}


# ---------------------------------------------------------------------------------------
# Strategies: URLs as dumps hold them

# The characters that break URL parsers: syntax characters, percent signs, controls.
_NASTY = "[]@:%/?#.\\ \t\r\n\x00\x01\x1f\x7f"
_nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(_NASTY), st.characters(codec="utf-8")), max_size=12
)

_ipv6 = st.ip_addresses(v=6).map(str)
_hosts = st.one_of(
    domains(),
    st.ip_addresses(v=4).map(str),
    _ipv6.map(lambda address: f"[{address}]"),  # as a URL writes it
    _ipv6,  # unbracketed: its colons look like a port
    _ipv6.map(lambda address: f"[{address}%25eth0]"),  # with a zone
    st.sampled_from(["bücher.de", "例え.jp", "ＥＸＡＭＰＬＥ．com", "xn--", "a..b", "", "[v1.x]"]),
    _nasty_text,
)
_ports = st.one_of(
    st.just(""),
    st.integers(min_value=-1, max_value=70_000).map(lambda port: f":{port}"),
    st.sampled_from([":", ":0", ":00080", ":+80", ":١٢", ":80:80", ": 80"]),
)
_userinfo = st.one_of(
    st.just(""),
    st.sampled_from(["user@", "user:pw@", "@", "a@b@", ":@", "[::1]@"]),
    _nasty_text.map(lambda text: text + "@"),
)
_schemes = st.one_of(  # mostly http(s), so that most URLs reach the later checks
    st.sampled_from(["http", "https"]),
    st.sampled_from(["HTTP", "hTTps"]),
    st.sampled_from(["ftp", "javascript", "file", ""]),
)
_paths = st.one_of(
    st.just(""),
    _nasty_text.map(lambda text: "/" + text),
    st.sampled_from(["/a%zz", "/%00", "/%E2%82%AC", "/a b?c=d&utm_source=x#f", "/\ud800"]),
)


@st.composite
def urls(draw) -> str:
    """A URL put together from hostile parts, or plain hostile text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=40))
    scheme, user, host = draw(_schemes), draw(_userinfo), draw(_hosts)
    port, path = draw(_ports), draw(_paths)
    return f"{scheme}://{user}{host}{port}{path}"


# ---------------------------------------------------------------------------------------
# The known forms, each with its fate


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://[::1]:40633/a", "http://[::1]:40633/a"),
        ("http://[::1]/a", "http://[::1]/a"),
        ("http://[0:0:0:0:0:0:0:1]:8080/", "http://[::1]:8080/"),  # one spelling per address
        ("http://[::FFFF:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
        ("http://user:pw@[2001:db8::1]:8080/", "http://[2001:db8::1]:8080/"),
        ("https://Bücher.de/ä", "https://xn--bcher-kva.de/%C3%A4"),
        ("http://example.com:00080/", "http://example.com/"),
        ("http://example.com/a\x01b", "http://example.com/a%01b"),
        ("http://a@b:c@example.com/", "http://example.com/"),  # the last "@" ends userinfo
    ],
)
def test_odd_but_usable_urls_are_kept_in_one_spelling(raw: str, expected: str) -> None:
    assert normalize_or_refuse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://[v1.x]/", "not an IPv6 address"),  # an "IPvFuture" literal
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[::1]:0/", "port 0"),
        ("http://[::1]:99999/", "invalid port"),
        ("http://example.com:١٢/", "invalid port"),  # Unicode digits are not a port
        ("http://exa\x00mple.com/", "not a host name"),
        ("http://exa mple.com/", "not a host name"),
        ("http://%65xample.com/", "not a host name"),
        ("http://xn--/", "not valid IDNA"),  # "xn--" promises Punycode and holds none
        ("http://" + "a" * 64 + ".com/", "not a host name"),
        ("http://" + ("a" * 60 + ".") * 5 + "com/", "not a host name"),  # > 253 characters
        ("http://example.com/" + "a" * MAX_URL_CHARS, f"longer than {MAX_URL_CHARS}"),
        ("http://example.com/\ud800", "lone surrogate"),
        ("http:///a", "missing host"),
    ],
)
def test_unusable_forms_are_refused_at_the_link_rules(raw: str, detail: str) -> None:
    verdict = normalize_or_refuse(raw)
    assert isinstance(verdict, Verdict), verdict
    assert (verdict.stage, verdict.reason) == ("links", "invalid_url")
    assert detail in verdict.detail


def test_origins_and_robots_urls_keep_ipv6_brackets() -> None:
    assert origin_of("http://[::1]:40633/a?b") == "http://[::1]:40633"
    assert origin_of("https://[2001:db8::1]/") == "https://[2001:db8::1]:443"
    assert origin_of("http://example.com/a") == "http://example.com:80"  # as before
    assert robots_url("http://[::1]:40633") == "http://[::1]:40633/robots.txt"
    assert robots_url("http://[::1]:40633/deep/page") == "http://[::1]:40633/robots.txt"
    for bad in ("not a url", "ftp://example.com/", "http://", "/relative"):
        with pytest.raises(ValueError, match="URL"):
            origin_of(bad)


def _dump(path: Path, records: list[object]) -> Path:
    """A JSON-lines dump; a str record is written as the raw line itself."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_store_takes_every_odd_line_and_plans_it(tmp_path: Path) -> None:
    records = [
        {"url": "http://[::1]:40633/a", "score": 5},
        {"url": "http://example.com/\ud800", "score": 5},  # a lone surrogate
        {"url": "http://example.com/b", "score": 5, "subreddit": "\udfff"},
        {"url": "http://example.com/c", "score": 10**30},  # no 64-bit karma
        {"url": "http://example.com/d", "score": 5, "created_utc": 10**30},
        {"url": "http://example.com/" + "x" * 100_000, "score": 5},
        {"url": "http://[fe80::1%25lo]/", "score": 5},
    ]
    dump = _dump(tmp_path / "dump.jsonl", records)
    decisions = list(iter_link_decisions([dump], LinkRules()))
    assert len(decisions) == len(records)
    reasons = [d.verdict.reason if d.verdict else "kept" for d in decisions]
    assert reasons == [
        "kept",
        "invalid_url",
        "kept",
        "invalid_score",
        "kept",
        "invalid_url",
        "invalid_url",
    ]
    assert decisions[2].link.subreddit is None  # not storable, so not kept
    assert decisions[4].link.created_utc is None
    with CorpusStore(tmp_path / "out") as store:
        store.add_links(decisions)
        assert store.counts()["total"] == len(records)
        assert "http://[::1]:40633" in store.pending_origins()
    assert len(plan_batches(tmp_path / "out", 2)) == 2  # the three kept links


# ---------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(urls())
def test_normalisation_never_raises_and_keeps_only_fetchable_urls(raw: str) -> None:
    result = normalize_or_refuse(raw)
    if isinstance(result, Verdict):
        assert result.stage == "links" and result.reason in {"invalid_url", "bad_scheme"}
        return
    # A kept URL is one the fetcher takes as written, whose origin and robots.txt URL can
    # be built and parse back, and which normalises to itself.
    assert url_refusal(result) is None, result
    assert normalize_or_refuse(result) == result
    origin = origin_of(result)
    assert origin_of(origin) == origin
    where = robots_url(result)
    assert httpx.URL(where).path == "/robots.txt"
    assert origin_of(where) == origin


@PROPERTY
@given(st.one_of(urls(), st.text(max_size=60)))
def test_the_fetchers_own_check_never_raises(raw: str) -> None:
    refusal = url_refusal(raw)
    if refusal is None:  # whatever it lets through, the robots step can place
        assert origin_of(robots_url(raw)) == origin_of(raw)
    else:
        assert (refusal.stage, refusal.reason) == ("fetch", "invalid_url")


_records = st.one_of(
    st.fixed_dictionaries(
        {"url": urls(), "score": st.one_of(st.integers(), st.floats(), st.text(max_size=5))},
        optional={"subreddit": st.text(max_size=5), "created_utc": st.integers()},
    ),
    st.text(max_size=30).filter(lambda line: "\n" not in line and "\r" not in line),
)


@settings(PROPERTY, max_examples=50)  # each example builds a store: fewer of them
@given(st.lists(_records, max_size=12))
def test_intake_gives_every_line_one_decision_and_the_store_takes_them(records) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dump = _dump(Path(tmp) / "dump.jsonl", records)
        decisions = list(iter_link_decisions([dump], LinkRules(min_score=0)))
        # Blank lines (ASCII whitespace only, as the reader sees bytes) get no decision.
        meaningful = [r for r in records if not isinstance(r, str) or r.encode().strip()]
        assert len(decisions) == len(meaningful)
        for decision in decisions:
            assert (decision.link is None) != (decision.verdict is None)
            if decision.link is not None:
                assert url_refusal(decision.link.url) is None
        with CorpusStore(Path(tmp) / "out") as store:
            store.add_links(decisions)
            origins = store.pending_origins()
            assert all(origin_of(origin) == origin for origin in origins)
        planned = plan_batches(Path(tmp) / "out", 3)
        kept = sum(decision.kept for decision in decisions)
        assert sum(1 for _ in planned) == -(-kept // 3)


class _RobotsMemory:
    """A RobotsCache in memory."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def robots_get(self, origin: str) -> Outcome | None:
        return self.outcomes.get(origin)

    def robots_put(self, origin: str, outcome: Outcome) -> None:
        self.outcomes[origin] = outcome


def _mock_web(location: str):
    """A whole web in one handler: robots.txt, HTML pages, and redirects to `location`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nDisallow: /private\n")
        if request.url.path.startswith("/r"):
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, html="<html><p>hello</p></html>")

    return answer


_locations = st.one_of(
    urls().filter(lambda url: url.isprintable() and url.isascii()),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)


@loopback_only
@PROPERTY
@given(
    st.lists(st.one_of(urls(), urls().map(normalize_or_refuse)), min_size=1, max_size=8),
    _locations,
    st.sampled_from(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]),
)
def test_fetch_planning_gives_every_url_a_page_and_never_an_internal_error(
    monkeypatch, candidates, location, address
) -> None:
    # Host names "resolve" to one public address (IPv4 or IPv6), so that the fetcher pins
    # its request to that address; the mock transport answers everything.
    async def resolve(host: str) -> list[str]:
        return [address]

    def client(settings: FetchSettings) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(_mock_web(location)))

    monkeypatch.setattr(fetch, "_resolve", resolve)
    monkeypatch.setattr(fetch, "_client", client)
    links = [Link(url) for url in candidates if isinstance(url, str)]
    quick = FetchSettings(per_host_delay_s=0, retries=0, max_redirects=2)
    cache = _RobotsMemory()
    origins = set()
    for link in links:
        with contextlib.suppress(ValueError):  # the fetcher refuses these itself: invalid_url
            origins.add(origin_of(link.url))
    fetch_robots(sorted(origins), quick, cache)
    pages = asyncio.run(fetch_pages(links, quick, robots_cache=cache))
    assert [page.url for page in pages] == [link.url for link in links]
    for page in pages:
        if page.failure is not None:
            assert page.failure.reason in FETCH_REASONS, page.failure
        else:
            assert page.status == 200 and page.body


# ---------------------------------------------------------------------------------------
# IPv6 literals against a real server, inside the namespace


@loopback_only
def test_an_ipv6_literal_link_is_fetched_and_its_robots_read_once() -> None:
    with MiniWeb(articles=3, host="::1") as web:
        assert web.base_url.startswith("http://[::1]:")
        urls = [web.url(path) for path in (*web.articles, web.case("robots_disallowed").path)]
        only_loopback = FetchSettings(allowed_networks=["::1/128"], per_host_delay_s=0)
        cache = _RobotsMemory()
        fetch_robots([origin_of(urls[0])], only_loopback, cache)
        assert list(cache.outcomes) == [origin_of(web.base_url)]
        pages = fetch_batch([Link(url) for url in urls], only_loopback, robots_cache=cache)
        hits = web.hits
    assert [page.failure.reason if page.failure else "ok" for page in pages] == [
        "ok",
        "ok",
        "ok",
        "robots_disallowed",
    ]
    assert hits["/robots.txt"] == 1
