"""The mini-web: realistic, deterministic pages, every bad case as described, counters
that tests can trust, a clean shutdown, and the submissions dump that points at it."""

from __future__ import annotations

import gzip
import html
import json
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import zstandard

from tasks.corpus.miniweb import (
    MiniWeb,
    build_articles,
    paragraph_pool,
    submission_lines,
    write_submissions_dump,
)
from tasks.corpus.miniweb.site import build_site

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def web():
    with MiniWeb(articles=10, huge_bytes=300_000, stall_s=10) as web:
        yield web


@pytest.fixture
def client():
    # trust_env=False: proxy variables must not reroute loopback traffic.
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=5) as client:
        yield client


def test_articles_are_deterministic_distinct_and_made_of_python_prose():
    articles = build_articles(200, seed=0)
    assert articles == build_articles(200, seed=0)
    assert articles != build_articles(200, seed=1)
    assert len({article.path for article in articles}) == 200
    pool = {paragraph for _, paragraph in paragraph_pool()}
    for article in articles:
        assert 4 <= len(article.paragraphs) <= 7
        assert len(article.text.split()) >= 100
        assert set(article.paragraphs) <= pool
    # No two articles share more than two paragraphs: none is a near-duplicate of another.
    paragraph_sets = [set(article.paragraphs) for article in articles]
    assert (
        max(len(a & b) for i, a in enumerate(paragraph_sets) for b in paragraph_sets[i + 1 :]) <= 2
    )


def test_article_pages_wrap_the_text_in_boilerplate(web, client):
    path = web.articles[0]
    response = client.get(web.url(path))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    for boilerplate in ("cookie-banner", "<nav", "Advertisement", 'id="comments"', "<footer"):
        assert boilerplate in page
    article = web.article(path)
    assert article.title in page
    for paragraph in article.paragraphs:
        assert f"<p>{html.escape(paragraph)}</p>" in page


def test_the_same_seed_serves_the_same_bytes(client):
    with MiniWeb(articles=5, seed=3) as one, MiniWeb(articles=5, seed=3) as two:
        assert one.articles == two.articles
        for path in one.articles:
            assert client.get(one.url(path)).content == client.get(two.url(path)).content


def test_the_site_is_plain_data_the_same_for_the_same_seed():
    site = build_site(5, seed=3)  # no server needed
    assert site == build_site(5, seed=3) and site != build_site(5, seed=4)
    for case in site.bad_cases:  # every bad case has an answer, but the 404
        assert (site.response(case.path) is None) == (case.name == "not_found"), case.name


def test_at_least_two_articles_and_no_url_before_start():
    with pytest.raises(ValueError, match="articles"):
        MiniWeb(articles=1)
    with pytest.raises(RuntimeError, match="not running"):
        MiniWeb(articles=2).base_url  # noqa: B018


def test_robots_txt(client):
    with MiniWeb(articles=2, crawl_delay=2) as web:
        robots = client.get(web.url("/robots.txt")).text
        assert "Disallow: /private/" in robots and "Crawl-delay: 2" in robots
    with MiniWeb(articles=2, robots_txt=None) as web:
        assert client.get(web.url("/robots.txt")).status_code == 404
    with MiniWeb(articles=2, robots_status=503) as web:
        assert client.get(web.url("/robots.txt")).status_code == 503


def test_http_errors_and_transient_failures(web, client):
    def get(name: str) -> httpx.Response:
        return client.get(web.url(web.case(name).path))

    assert get("not_found").status_code == 404
    assert get("gone").status_code == 410
    assert [get("server_error_once").status_code for _ in range(2)] == [500, 200]
    assert get("server_error_always").status_code == 500
    limited = get("rate_limited_once")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert get("rate_limited_once").status_code == 200
    web.reset_stats()  # the transient failures start over
    assert get("server_error_once").status_code == 500


def test_content_types_and_encodings(web, client):
    def get(name: str) -> httpx.Response:
        return client.get(web.url(web.case(name).path))

    png = get("image_png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    mislabelled = get("png_as_html")
    assert mislabelled.headers["content-type"] == "text/html"
    assert mislabelled.content[:4] == b"\x89PNG"
    assert get("plain_text").headers["content-type"].startswith("text/plain")
    xhtml = get("xhtml")
    assert xhtml.headers["content-type"] == "application/xhtml+xml"
    ElementTree.fromstring(xhtml.content)  # well-formed XML

    with pytest.raises(UnicodeDecodeError):
        get("invalid_utf8").content.decode("utf-8")
    latin = get("latin1_header")
    assert latin.headers["content-type"] == "text/html; charset=iso-8859-1"
    assert "café" in latin.content.decode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        latin.content.decode("utf-8")
    meta = get("latin1_meta")
    assert meta.headers["content-type"] == "text/html"
    assert b'<meta charset="iso-8859-1">' in meta.content
    assert "Smörgåsbord" in meta.content.decode("latin-1")

    assert get("empty").content == b""
    script_only = get("script_only").text
    assert "<script" in script_only
    without_scripts = re.sub(r"(?s)<script.*?</script>|<title>.*?</title>", "", script_only)
    assert re.sub(r"<[^>]+>", "", without_scripts).strip() == ""  # no visible text
    assert '<html lang="de">' in get("german").text
    assert '<html lang="fr">' in get("french").text


def test_redirects(web, client):
    def location(path: str) -> str:
        response = client.get(web.url(path))
        assert response.status_code in (301, 302)
        return response.headers["location"]

    assert location("/redirect/loop-a.html") == "loop-b.html"
    assert location("/redirect/loop-b.html") == "loop-a.html"
    assert location("/redirect/chain/12") == "11"
    assert location("/redirect/chain/0") == "/redirect/landing.html"
    assert location(web.case("redirect_ok").path) == "/redirect/landing.html"
    assert location(web.case("redirect_to_private").path).startswith("http://10.")
    assert location(web.case("redirect_to_metadata").path).startswith("http://169.254.")
    assert client.get(web.url("/redirect/landing.html")).status_code == 200


def test_duplicates(web, client):
    original = client.get(web.url(web.articles[0])).content
    assert client.get(web.url(web.case("exact_duplicate").path)).content == original
    near = web.article(web.articles[1])
    copy = client.get(web.url(web.case("near_duplicate").path)).text
    copied_words = html.unescape(" ".join(_paragraphs(copy))).split()
    changed = sum(a != b for a, b in zip(near.text.split(), copied_words, strict=True))
    assert 1 <= changed <= 6


def _paragraphs(page: str) -> list[str]:
    body = page.split('<div class="entry-content">', 1)[1].split("</div>", 1)[0]
    return [line[3:-4] for line in body.strip().splitlines()]


def test_huge_pages_stream_their_whole_size(web, client):
    declared = client.get(web.url("/huge/declared.html"))
    assert declared.headers["content-length"] == str(web.huge_bytes)
    assert len(declared.content) == web.huge_bytes
    streamed = client.get(web.url("/huge/streamed.html"))
    assert "content-length" not in streamed.headers
    assert len(streamed.content) == web.huge_bytes
    assert web.bytes_sent["/huge/streamed.html"] == web.huge_bytes


def test_a_stalled_page_does_not_hold_up_shutdown(client):
    web = MiniWeb(articles=2, stall_s=60).start()
    with pytest.raises(httpx.ReadTimeout):
        client.get(web.url("/slow/stall-mid-body.html"), timeout=0.3)
    started = time.monotonic()
    web.stop()
    assert time.monotonic() - started < 5


def test_counters_see_every_request_and_the_concurrency(client):
    with MiniWeb(articles=8, delay_s=0.1) as web:
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(lambda p: client.get(web.url(p)).status_code, web.articles))
        assert statuses == [200] * 8
        assert all(web.hits[path] == 1 for path in web.articles)
        assert 2 <= web.max_in_flight <= 4
        assert {r.path for r in web.requests} == set(web.articles)
        assert all(r.user_agent.startswith("python-httpx") for r in web.requests)
        web.reset_stats()
        assert web.hits == {} and web.requests == [] and web.max_in_flight == 0


def test_serves_many_concurrent_connections():
    with MiniWeb(articles=50) as web:

        def get(path: str) -> int:
            # One client per thread: separate connections, as separate crawlers would.
            with httpx.Client(trust_env=False) as own:
                return own.get(web.url(path)).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert list(pool.map(get, web.articles)) == [200] * 50


# ---------------------------------------------------------------------------------------
# The submissions dump


def _read(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data.decode("utf-8").splitlines()


def test_dump_is_the_same_in_every_format_and_deterministic(tmp_path):
    with MiniWeb(articles=5) as web:
        expected = submission_lines(web)
        for name in ("dump.jsonl", "dump.jsonl.gz", "dump.jsonl.zst"):
            path = write_submissions_dump(tmp_path / name, web)
            assert _read(path) == expected
            first = path.read_bytes()
            assert write_submissions_dump(path, web).read_bytes() == first
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "dump.jsonl",
            "dump.jsonl.gz",
            "dump.jsonl.zst",
        ]  # no temporary files left behind


def test_dump_points_at_every_page_and_holds_every_kind_of_bad_line():
    with MiniWeb(articles=5) as web:
        lines = submission_lines(web)
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "title" in record:
                records.append(record)
        urls = [record.get("url") for record in records]
        for path in web.articles + [case.path for case in web.bad_cases]:
            assert web.url(path) in urls
        for record in records:
            assert {
                "id",
                "score",
                "subreddit",
                "created_utc",
                "is_self",
                "over_18",
                "title",
                "permalink",
            } <= record.keys()
        assert [r["created_utc"] for r in records] == sorted(r["created_utc"] for r in records)
        # Lines the link rules must drop, and lines that are not usable records at all.
        assert any(r["score"] < 3 for r in records)
        assert any(r["is_self"] for r in records) and any(r["over_18"] for r in records)
        for prefix in ("javascript:", "file:", "ftp:", "https://de.wikipedia.org/"):
            assert any((url or "").startswith(prefix) for url in urls), prefix
        assert any((url or "").endswith(".jpg") for url in urls)
        assert any("url" not in record for record in records)
        assert "this line is not JSON {" in lines and "[1, 2, 3]" in lines and "" in lines


# ---------------------------------------------------------------------------------------
# The command line


def test_command_line_serves_until_interrupted(tmp_path):
    dump = tmp_path / "links.jsonl.zst"
    command = [sys.executable, "-m", "tasks.corpus.miniweb", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--articles", "3", "--dump", str(dump)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("mini-web: 3 articles at http://127.0.0.1:")
        base_url = first.split(" at ")[1].strip()
        with httpx.Client(trust_env=False) as client:
            assert client.get(base_url + "/robots.txt").status_code == 200
        assert "submissions dump" in process.stdout.readline()
        assert dump.exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stats_are_thread_safe():
    with MiniWeb(articles=2) as web:
        path = web.articles[0]

        def hammer() -> None:
            with httpx.Client(trust_env=False) as own:
                for _ in range(10):
                    own.get(web.url(path))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert web.hits[path] == 40 and len(web.requests) == 40
