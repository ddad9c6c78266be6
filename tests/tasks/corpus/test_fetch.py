"""The fetcher against the mini-web: politeness, limits, retries, and every bad case.

The mini-web listens on 127.0.0.1, which the private-address rule refuses by default, so
these tests allow private addresses; the refusal itself is tested inside a loopback-only
network namespace (`@loopback_only`), as is everything that names an outside or private
address, so that no packet can leave this machine even if the fetcher is wrong.
Delays are kept tiny and nothing asserts absolute speed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import ip_address
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from tasks.corpus import fetch
from tasks.corpus.fetch import (
    FetchSettings,
    address_refused,
    fetch_batch,
    fetch_pages,
    looks_binary,
    parse_retry_after,
    url_refusal,
)
from tasks.corpus.miniweb import METADATA_TARGET, PRIVATE_TARGET, MiniWeb
from tasks.corpus.records import Link, Page
from tests.tasks.corpus.netns import loopback_only


def settings(**overrides) -> FetchSettings:
    """Settings for the local mini-web: no delays, short timeouts, quick retries."""
    values = {
        "allow_private_addresses": True,  # the mini-web is on 127.0.0.1
        "per_host_delay_s": 0.0,
        "per_host_connections": 4,
        "connect_timeout_s": 2.0,
        "total_timeout_s": 2.0,
        "retries": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 2.0,
        "max_bytes": 200_000,
    }
    return FetchSettings(**{**values, **overrides})


def links(web: MiniWeb, *paths: str) -> list[Link]:
    return [Link(web.url(path)) for path in paths]


def reason(page: Page) -> str:
    return page.failure.reason if page.failure is not None else "ok"


def starts(web: MiniWeb, path: str | None = None) -> list[float]:
    return [r.started for r in web.requests if path is None or r.path == path]


@pytest.fixture
def web():
    with MiniWeb(articles=22) as web:
        yield web


# ---------------------------------------------------------------------------------------
# Settings


def test_settings_defaults_are_the_documented_ones():
    s = FetchSettings()
    assert s.user_agent == "gpt2lab/0.1 (+corpus research crawler)"
    assert (s.max_connections, s.per_host_connections, s.per_host_delay_s) == (16, 2, 1.0)
    assert (s.connect_timeout_s, s.total_timeout_s, s.max_bytes) == (10, 30, 5_000_000)
    assert (s.max_redirects, s.retries, s.backoff_base_s, s.backoff_max_s) == (5, 3, 0.5, 30)
    assert s.respect_robots and not s.allow_private_addresses and s.allowed_networks == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("per_host_connections", -1),
        ("per_host_delay_s", -0.5),
        ("total_timeout_s", 0),
        ("max_bytes", 0),
        ("user_agent", "gpt2lab\r\nX-Injected: yes"),
        ("user_agent", ""),
        ("allowed_networks", ["not-a-network"]),
        ("max_conections", 3),  # a typo is an error, not silently ignored
    ],
)
def test_invalid_settings_fail_naming_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        FetchSettings(**{field: value})


# ---------------------------------------------------------------------------------------
# Pure helpers


def test_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < parse_retry_after(later) <= 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_binary_sniffing():
    assert looks_binary(b"\x89PNG\r\n\x1a\n....")
    assert looks_binary(b"<html>\x00\x01\x02")
    assert not looks_binary(b"<!DOCTYPE html><html><body>caf\xc3\xa9</body></html>")
    assert not looks_binary("<html>hi</html>".encode("utf-16"))  # BOM, then NUL bytes


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "not a url", "http://", "http://exa mple.com/", "http://a.b:99999/"],
)
def test_unfetchable_urls_are_refused_before_any_network_work(url):
    refusal = url_refusal(url)
    assert refusal is not None and (refusal.stage, refusal.reason) == ("fetch", "invalid_url")


def test_fetchable_urls_are_not_refused():
    assert url_refusal("https://example.com/a?b=1") is None
    assert url_refusal("http://[::1]:8080/") is None  # refused later, by its address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.255.255.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert address_refused(ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_refused(ip_address(address)) is None


# ---------------------------------------------------------------------------------------
# Good pages


def test_pages_come_back_one_per_link_in_input_order(web):
    paths = list(reversed(web.articles))
    seen: list[Page] = []
    pages = fetch_batch(links(web, *paths), settings(), on_page=seen.append)
    assert [page.url for page in pages] == [web.url(path) for path in paths]
    for page, path in zip(pages, paths, strict=True):
        assert page.failure is None and page.status == 200 and page.attempts == 1
        assert page.content_type == "text/html; charset=utf-8"
        assert page.final_url == web.url(path)
        assert web.article(path).paragraphs[0].split()[0].encode() in page.body
        assert page.fetched_at.endswith("+00:00")
    assert sorted(p.url for p in seen) == sorted(p.url for p in pages)
    hits = web.hits
    assert all(hits[path] == 1 for path in paths)  # no URL fetched twice
    assert hits["/robots.txt"] == 1


def test_duplicate_links_are_fetched_once(web):
    path = web.articles[0]
    seen: list[Page] = []
    pages = fetch_batch(links(web, path, path), settings(), on_page=seen.append)
    assert len(pages) == 2 and pages[0] is pages[1]
    assert web.hits[path] == 1 and len(seen) == 1


def test_no_links_no_pages():
    assert fetch_batch([], settings()) == []


def test_user_agent_is_sent_with_every_request(web):
    agent = "gpt2lab-test/9.9 (+https://example.invalid/crawler)"
    fetch_batch(links(web, *web.articles[:3]), settings(user_agent=agent))
    assert len(web.requests) == 4
    assert {r.user_agent for r in web.requests} == {agent}


def test_an_xhtml_page_is_kept(web):
    [page] = fetch_batch(links(web, web.case("xhtml").path), settings())
    assert page.failure is None and page.content_type == "application/xhtml+xml"


# ---------------------------------------------------------------------------------------
# Every bad case in one run


def test_every_bad_case_gets_its_verdict_and_the_run_completes(web):
    cases = [case for case in web.bad_cases if not case.leaves_machine]
    batch = links(web, *web.articles[:4], *(case.path for case in cases))
    pages = fetch_batch(batch, settings(total_timeout_s=0.5, max_bytes=100_000))
    assert len(pages) == len(batch)
    by_url = {page.url: page for page in pages}
    for case in cases:
        page = by_url[web.url(case.path)]
        assert reason(page) == case.fetch, (case.name, page.failure)
        assert (page.body is None) == (page.failure is not None), case.name
    for path in web.articles[:4]:
        assert reason(by_url[web.url(path)]) == "ok"
    assert by_url[web.url(web.case("server_error_once").path)].attempts == 2
    assert by_url[web.url(web.case("rate_limited_once").path)].attempts == 2
    assert by_url[web.url(web.case("server_error_always").path)].attempts == 2
    assert by_url[web.url(web.case("stall_mid_body").path)].attempts == 2
    moved = by_url[web.url(web.case("redirect_ok").path)]
    assert moved.final_url == web.url("/redirect/landing.html") and moved.status == 200
    assert by_url[web.url(web.case("not_found").path)].status == 404
    assert web.hits[web.case("robots_disallowed").path] == 0  # never even asked for


# ---------------------------------------------------------------------------------------
# robots.txt


def test_robots_is_read_once_per_host_before_any_page(web):
    fetch_batch(links(web, *web.articles), settings(per_host_connections=4))
    assert web.hits["/robots.txt"] == 1
    assert web.requests[0].path == "/robots.txt"


def test_robots_groups_are_matched_against_our_user_agent(web):
    # The mini-web's robots.txt shuts out "BadBot" entirely.
    [page] = fetch_batch(links(web, web.articles[0]), settings(user_agent="BadBot/2.0"))
    assert reason(page) == "robots_disallowed"
    assert web.hits[web.articles[0]] == 0


def test_without_respect_for_robots_nothing_is_disallowed(web):
    path = web.case("robots_disallowed").path
    [page] = fetch_batch(links(web, path), settings(respect_robots=False))
    assert reason(page) == "ok" and web.hits["/robots.txt"] == 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, "ok"), (403, "ok"), (503, "robots_unreachable"), (429, "robots_unreachable")],
)
def test_robots_status_decides_per_rfc_9309(status, expected):
    # 4xx: "unavailable", no rules; 5xx and 429: "unreachable", assume all disallowed.
    with MiniWeb(articles=2, robots_status=status) as web:
        pages = fetch_batch(links(web, *web.articles), settings(retries=1))
        assert [reason(page) for page in pages] == [expected, expected]
        assert web.hits["/robots.txt"] == (1 if status < 429 else 2)  # 5xx/429 retried
        if expected != "ok":
            assert sum(web.hits[path] for path in web.articles) == 0


def test_missing_robots_allows_everything():
    with MiniWeb(articles=2, robots_txt=None) as web:
        path = web.case("robots_disallowed").path
        [page] = fetch_batch(links(web, path), settings())
        assert reason(page) == "ok"


def test_crawl_delay_slows_down_requests_to_the_host():
    with MiniWeb(articles=2, crawl_delay=1) as web:
        pages = fetch_batch(links(web, *web.articles), settings(per_host_delay_s=0.0))
        assert [reason(page) for page in pages] == ["ok", "ok"]
        first, second = sorted(r.started for r in web.requests if r.path in web.articles)
        assert second - first >= 0.9


# ---------------------------------------------------------------------------------------
# Politeness limits, seen from the server


def test_per_host_concurrency_is_never_exceeded():
    with MiniWeb(articles=26, delay_s=0.05) as web:
        fetch_batch(links(web, *web.articles), settings(per_host_connections=2))
        assert web.max_in_flight == 2  # used, never exceeded


def test_global_limit_caps_all_requests():
    with MiniWeb(articles=8, delay_s=0.02) as web:
        fetch_batch(links(web, *web.articles), settings(max_connections=1))
        assert web.max_in_flight == 1


def test_per_host_delay_spaces_request_starts(web):
    delay = 0.15
    fetch_batch(links(web, *web.articles[:4]), settings(per_host_delay_s=delay))
    times = starts(web)  # robots.txt and four pages
    assert len(times) == 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= delay * 0.66, gaps  # a little slack for the server's own clock
    assert times[-1] - times[0] >= 4 * delay * 0.9


# ---------------------------------------------------------------------------------------
# Retries


def test_retry_after_is_honoured(web):
    path = web.case("rate_limited_once").path
    [page] = fetch_batch(links(web, path), settings(backoff_base_s=0.0))
    assert reason(page) == "ok" and page.attempts == 2
    first, second = starts(web, path)
    assert second - first >= 0.9 * web.retry_after_s


def test_retry_after_longer_than_backoff_max_gives_up_instead_of_retrying_early(web):
    path = web.case("rate_limited_once").path
    [page] = fetch_batch(links(web, path), settings(backoff_max_s=0.5))
    assert reason(page) == "http_429" and page.attempts == 1
    assert "Retry-After" in page.failure.detail
    assert web.hits[path] == 1


def test_server_errors_are_retried_with_growing_waits(web):
    path = web.case("server_error_always").path
    [page] = fetch_batch(links(web, path), settings(retries=2, backoff_base_s=0.1))
    assert reason(page) == "http_500" and page.status == 500 and page.attempts == 3
    first, second, third = starts(web, path)
    # Waits are base * 2**k times a jitter factor between 0.5 and 1.
    assert second - first >= 0.04 and third - second >= 0.09


def test_a_server_that_stalls_mid_body_times_out_and_is_retried(web):
    path = web.case("stall_mid_body").path
    [page] = fetch_batch(links(web, path), settings(total_timeout_s=0.3, retries=1))
    assert reason(page) == "timeout" and page.attempts == 2 and page.body is None
    assert web.hits[path] == 2


# ---------------------------------------------------------------------------------------
# Body size, content type, redirects


@pytest.mark.parametrize("case", ["too_large_streamed", "too_large_declared"])
def test_body_cap_hangs_up_long_before_the_whole_body(web, case):
    path = web.case(case).path
    [page] = fetch_batch(links(web, path), settings(max_bytes=100_000))
    assert reason(page) == "too_large" and page.body is None
    # The server counts what it managed to hand to the network before the client hung
    # up; wait until that stops growing. Socket buffers hold a few MB at most.
    sent = -1
    for _ in range(40):
        time.sleep(0.05)
        if web.bytes_sent[path] == sent:
            break
        sent = web.bytes_sent[path]
    assert sent < web.huge_bytes / 2


def test_binary_sniffing_can_be_turned_off(web):
    path = web.case("png_as_html").path
    [page] = fetch_batch(links(web, path), settings(sniff_binary=False))
    assert reason(page) == "ok" and page.body.startswith(b"\x89PNG")  # extraction's job now


def test_redirect_limits(web):
    moved, chain = web.case("redirect_ok").path, web.case("too_many_redirects").path
    [page] = fetch_batch(links(web, moved), settings(max_redirects=0))
    assert reason(page) == "too_many_redirects"
    [page] = fetch_batch(links(web, chain), settings(max_redirects=13))  # 12, 11, ..., 0
    assert reason(page) == "ok" and page.final_url == web.url("/redirect/landing.html")


# ---------------------------------------------------------------------------------------
# Callers: callbacks, threads, event loops


def test_on_page_is_called_as_each_page_completes():
    with MiniWeb(articles=2, delay_s=0.3) as web:
        article, missing = web.url(web.articles[0]), web.url(web.case("not_found").path)
        calls: list[str] = []
        fetch_batch([Link(article), Link(missing)], settings(), on_page=calls.append)
        # The 404 comes at once: it is reported while the slow article is still loading.
        assert [page.url for page in calls] == [missing, article]


def test_an_error_in_on_page_stops_the_batch_and_propagates(web):
    def broken(page: Page) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fetch_batch(links(web, *web.articles[:3]), settings(), on_page=broken)


def test_fetch_batch_runs_in_a_worker_thread_and_inside_a_running_loop(web):
    results: list[list[Page]] = []
    worker = threading.Thread(
        target=lambda: results.append(fetch_batch(links(web, web.articles[0]), settings()))
    )
    worker.start()
    worker.join(timeout=30)

    async def from_async_code() -> list[Page]:
        return fetch_batch(links(web, web.articles[1]), settings())

    results.append(asyncio.run(from_async_code()))
    results.append(asyncio.run(fetch_pages(links(web, web.articles[2]), settings())))
    assert [reason(pages[0]) for pages in results] == ["ok", "ok", "ok"]


# ---------------------------------------------------------------------------------------
# Inside a loopback-only network namespace: outside and private addresses


@loopback_only
def test_private_destinations_are_refused_before_any_connection():
    with MiniWeb(articles=2) as web:
        port = urlsplit(web.base_url).port
        urls = [
            "http://10.255.255.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            web.url(web.articles[0]),  # 127.0.0.1, the mini-web itself
            f"http://[::1]:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://0.0.0.0:{port}/",
            f"http://localhost:{port}/",  # a name that resolves to loopback
        ]
        pages = fetch_batch([Link(url) for url in urls], FetchSettings(retries=0))
        assert [reason(page) for page in pages] == ["private_address"] * len(urls)
        assert all(page.status is None and page.attempts == 1 for page in pages)
        assert web.requests == []  # not even robots.txt


@loopback_only
def test_redirects_to_private_addresses_are_refused():
    with MiniWeb(articles=2) as web:
        # Allow the mini-web's own address, and nothing else that is private.
        only_miniweb = FetchSettings(allowed_networks=["127.0.0.1/32"], per_host_delay_s=0)
        paths = [web.case("redirect_to_private").path, web.case("redirect_to_metadata").path]
        pages = fetch_batch(links(web, web.articles[0], *paths), only_miniweb)
        assert [reason(page) for page in pages] == ["ok", "private_address", "private_address"]
        assert [page.final_url for page in pages[1:]] == [PRIVATE_TARGET, METADATA_TARGET]
        assert [page.attempts for page in pages] == [1, 1, 1]


@loopback_only
def test_allowing_private_addresses_lets_them_through():
    # Inside the namespace 10.x is unreachable: a connection error proves that the switch
    # let the request go, and that the namespace held it.
    [page] = fetch_batch([Link("http://10.255.255.1/")], settings(retries=1))
    # robots.txt could not be fetched (after its retries): the host is down, say so.
    assert reason(page) == "connection_error" and "robots.txt" in page.failure.detail
    [page] = fetch_batch([Link("http://10.255.255.1/")], settings(retries=1, respect_robots=False))
    assert reason(page) == "connection_error" and page.attempts == 2


@loopback_only
def test_bad_urls_and_unknown_hosts_fail_cleanly():
    bad = [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://ftp.example.com/pub/readme.txt",
        "not a url",
        "",
        "http://",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "mailto:someone@example.com",
    ]
    unknown = ["http://no-such-host.invalid/", "https://www.example.com/"]
    quick = FetchSettings(retries=1, backoff_base_s=0.01, connect_timeout_s=2)
    pages = fetch_batch([Link(url) for url in bad + unknown], quick)
    assert [reason(page) for page in pages] == ["invalid_url"] * len(bad) + [
        "connection_error"
    ] * len(unknown)
    assert all(page.attempts == 1 for page in pages[: len(bad)])


@loopback_only
def test_host_names_are_pinned_to_the_address_that_was_checked(monkeypatch):
    # "pinned.test" resolves nowhere; if the fetcher looked it up again when connecting
    # (DNS rebinding's window), the request would fail instead of reaching the mini-web.
    async def fake_resolve(host: str) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(fetch, "_resolve", fake_resolve)
    with MiniWeb(articles=2) as web:
        port = urlsplit(web.base_url).port
        only_miniweb = FetchSettings(allowed_networks=["127.0.0.1/32"], per_host_delay_s=0)
        url = f"http://pinned.test:{port}{web.articles[0]}"
        [page] = fetch_batch([Link(url)], only_miniweb)
        assert reason(page) == "ok" and page.final_url == url
        assert {r.host for r in web.requests} == {f"pinned.test:{port}"}
