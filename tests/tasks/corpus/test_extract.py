"""Extraction: decoding bytes, keeping the article, and surviving bad or slow pages."""

from __future__ import annotations

import codecs
import multiprocessing
import os
import signal
import threading
import time

import pytest

from tasks.corpus.extract import (
    ExtractionPool,
    ExtractSettings,
    decode_html,
    extract_document,
    extract_pages,
    shutdown_pools,
)
from tasks.corpus.records import Document, Page, Verdict

ARTICLE = [
    "The city council voted on Tuesday to turn the old railway depot into a public library, "
    "ending a debate that had lasted for almost a decade and divided the neighbourhood.",
    "Supporters of the plan said the building, which has stood empty since the last freight "
    "trains stopped running in 1998, was too important to the history of the town to be sold "
    "to developers. They argued that a library would bring families back to the area.",
    "Opponents had warned that the renovation would cost far more than the council expected. "
    "An independent survey last year found damage to the roof and to the brick walls of the "
    "north wing, and estimated that repairs alone would take two years.",
    "The mayor said that the final budget included a reserve for such surprises and that work "
    "would begin in the spring. The library is expected to open its doors to the public in "
    "the autumn of the following year, with a reading room in the former ticket hall.",
]
BOILERPLATE = [
    "Subscribe to our newsletter",  # navigation
    "Buy cheap widgets now",  # advertisement
    "Ten celebrity diets",  # "trending" sidebar
    "WidgetFan42",  # reader comments
    "waste of taxpayers money",
    "All rights reserved",  # footer
    "Cookie settings",
    "window.analytics",  # script
    "font-family",  # style
]
TITLE = "Old railway depot to become a library"


def article_html(title: str = TITLE, paragraphs: list[str] = ARTICLE, head: str = "") -> str:
    """A news page as the web serves it: the article wrapped in navigation, ads, a
    sidebar, reader comments and a footer."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return f"""<!DOCTYPE html>
<html lang="en"><head>{head}<title>{title} | Example Gazette</title>
<script>window.analytics = {{track: function() {{}}}};</script>
<style>body {{ font-family: serif; }}</style></head>
<body>
<header><nav class="main-nav"><ul>
<li><a href="/">Home</a></li><li><a href="/news">News</a></li><li><a href="/sport">Sport</a></li>
<li><a href="/subscribe">Subscribe to our newsletter</a></li></ul></nav></header>
<aside class="sidebar advertisement"><div class="ad">Buy cheap widgets now, limited offer!</div>
<ul class="trending"><li><a href="/a">Ten celebrity diets you will not believe</a></li></ul>
</aside>
<main><article>
<h1>{title}</h1>
<p class="byline">By Jane Reporter, 3 March 2024</p>
{body}
</article>
<section id="comments" class="comments"><h3>Comments</h3>
<div class="comment"><p>Comment by WidgetFan42: totally agree, libraries rock and this is
great news for everybody in town!</p></div>
<div class="comment"><p>Comment by GrumpyNeighbour: what a waste of taxpayers money, the roof
will cave in again.</p></div>
</section></main>
<footer><p>Copyright 2024 Example Media. All rights reserved.</p>
<p><a href="/privacy">Privacy Policy</a> | <a href="/cookies">Cookie settings</a></p></footer>
</body></html>"""


# Words a wrong decoding would garble, in a paragraph long enough to be main text.
ACCENTED = (
    "Le café au coin de la rue sert une crème brûlée célèbre. The naïve critic wrote a "
    "résumé of the façade, the déjà vu and the señor's piñata for the Zürich gazette."
)
LATIN1_PAGE = article_html(paragraphs=[*ARTICLE, ACCENTED])

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06" + bytes(
    range(256)
)


def page(body: bytes | None, content_type: str | None = "text/html", url: str = "") -> Page:
    url = url or f"https://example.com/{abs(hash(body)) % 10_000}"
    return Page(
        url=url,
        final_url=url,
        status=200 if body is not None else None,
        content_type=content_type,
        body=body,
        fetched_at="2024-03-03T00:00:00Z",
        failure=None if body is not None else Verdict("fetch", "timeout", "connect timeout"),
    )


@pytest.fixture(scope="module", autouse=True)
def no_leaked_workers():
    """Every worker process a test starts is gone when this module is done."""
    yield
    shutdown_pools()
    assert [p for p in multiprocessing.active_children() if p.name == "gpt2lab-extract"] == []


# ---------------------------------------------------------------------------------------
# decode_html
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("text/html; charset=ISO-8859-1", ""),  # the HTTP header says so
        ("text/html", '<meta charset="iso-8859-1">'),  # the page says so
        (None, '<meta http-equiv="Content-Type" content="text/html; charset=latin1">'),
        ("text/html", ""),  # nobody says: UTF-8 fails, windows-1252 fits
    ],
    ids=["header", "meta-charset", "http-equiv", "undeclared"],
)
def test_latin1_pages_decode_correctly(content_type, head):
    body = article_html(paragraphs=[ACCENTED], head=head).encode("latin-1")
    text = decode_html(body, content_type)
    assert isinstance(text, str)
    assert ACCENTED in text
    assert "\ufffd" not in text


def test_latin1_label_reads_as_windows_1252_like_browsers():
    # Servers say latin-1 and send cp1252's curly quotes (bytes 0x93/0x94) and euro sign.
    body = b"<p>\x93Quoted\x94 and 5 \x80</p>"
    assert decode_html(body, "text/html; charset=iso-8859-1") == "<p>“Quoted” and 5 €</p>"


def test_utf8_page_mislabelled_latin1_is_read_as_utf8():
    body = f"<p>{ACCENTED}</p>".encode()
    assert decode_html(body, "text/html; charset=iso-8859-1") == f"<p>{ACCENTED}</p>"


def test_header_charset_beats_a_wrong_guess_and_bom_beats_header():
    assert decode_html("<p>Привет</p>".encode("cp1251"), "text/html; charset=windows-1251") == (
        "<p>Привет</p>"
    )
    body = codecs.BOM_UTF8 + "<p>naïve</p>".encode()
    assert decode_html(body, "text/html; charset=iso-8859-1") == "<p>naïve</p>"
    body = codecs.BOM_UTF16_LE + "<p>naïve</p>".encode("utf-16-le")
    assert decode_html(body, "text/html") == "<p>naïve</p>"


def test_a_false_utf16_label_is_ignored():
    assert decode_html("<p>naïve</p>".encode(), "text/html; charset=utf-16") == "<p>naïve</p>"
    assert decode_html("<p>naïve</p>".encode("utf-16-le"), "text/html; charset=utf-16le") == (
        "<p>naïve</p>"
    )


def test_invalid_utf8_keeps_the_good_text():
    # Declared UTF-8, mostly UTF-8, but one stray byte and a character cut off at the end
    # (bodies are truncated at the size limit).
    body = f"<p>{ACCENTED}</p>".encode() + b"<p>bad \xff byte</p>" + "é".encode()[:1]
    text = decode_html(body, "text/html; charset=utf-8")
    assert isinstance(text, str)
    assert ACCENTED in text
    assert "bad \ufffd byte" in text


def test_utf8_declared_but_really_cp1252_falls_back():
    body = f"<p>{ACCENTED}</p>".encode("cp1252")
    assert decode_html(body, "text/html; charset=utf-8") == f"<p>{ACCENTED}</p>"


@pytest.mark.parametrize(
    "body",
    [PNG_BYTES, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"%PDF-1.7\n%\xe2\xe3", b"PK\x03\x04\x14"],
    ids=["png", "jpeg", "pdf", "zip"],
)
def test_binary_bodies_labelled_html_are_dropped(body):
    verdict = decode_html(body, "text/html; charset=utf-8")
    assert isinstance(verdict, Verdict)
    assert (verdict.stage, verdict.reason) == ("extract", "binary_content")


def test_unknown_binary_with_nul_bytes_is_dropped():
    verdict = decode_html(b"<html>" + bytes(range(256)) * 4, "text/html")
    assert isinstance(verdict, Verdict) and verdict.reason == "binary_content"


def test_empty_body_and_unknown_charset_do_not_crash():
    assert decode_html(b"", "text/html") == ""
    assert decode_html(b"<p>plain</p>", "text/html; charset=no-such-charset") == "<p>plain</p>"


# ---------------------------------------------------------------------------------------
# extract_document
# ---------------------------------------------------------------------------------------


def test_main_text_is_kept_and_boilerplate_dropped():
    doc = extract_document("https://example.com/depot", article_html(), ExtractSettings())
    assert isinstance(doc, Document)
    assert doc.title == TITLE
    for paragraph in ARTICLE:
        assert paragraph in doc.text
    for junk in BOILERPLATE:
        assert junk not in doc.text, junk


@pytest.mark.parametrize(
    "html",
    [
        "",
        "<html><head><title>Nothing</title></head><body></body></html>",
        "<html><head><script>var a = 1;</script></head><body><script>"
        "document.write('Hello from a script that renders the whole page at run time');"
        "</script><noscript>Please enable JavaScript.</noscript></body></html>",
    ],
    ids=["empty", "empty-body", "script-only"],
)
def test_pages_without_main_text(html):
    verdict = extract_document("https://example.com/x", html, ExtractSettings())
    assert isinstance(verdict, Verdict)
    assert (verdict.stage, verdict.reason) == ("extract", "no_main_text")


# ---------------------------------------------------------------------------------------
# extract_pages: many pages, worker processes, time limit
# ---------------------------------------------------------------------------------------


def mixed_pages() -> list[Page]:
    return [
        page(article_html().encode(), "text/html; charset=utf-8", url="https://a.example/1"),
        page(PNG_BYTES, "text/html", url="https://a.example/image"),
        page(LATIN1_PAGE.encode("latin-1"), "text/html", url="https://a.example/latin1"),
        page(b"<html><body><script>x()</script></body></html>", url="https://a.example/js"),
        page(None, None, url="https://a.example/unreachable"),
        page(b"", "text/html", url="https://a.example/empty"),
    ]


def test_extract_pages_one_result_per_page_in_order():
    pages = mixed_pages()
    results = extract_pages(pages, ExtractSettings(workers=2))
    assert len(results) == len(pages)
    article, image, latin1, script, unreachable, empty = results
    assert isinstance(article, Document) and article.url == "https://a.example/1"
    assert article.title == TITLE
    assert isinstance(image, Verdict) and image.reason == "binary_content"
    assert isinstance(latin1, Document) and ACCENTED in latin1.text
    assert isinstance(script, Verdict) and script.reason == "no_main_text"
    assert unreachable == Verdict("fetch", "timeout", "connect timeout")  # kept as fetched
    assert isinstance(empty, Verdict) and empty.reason == "no_main_text"
    # Inline (workers=0) gives the very same results.
    assert extract_pages(pages, ExtractSettings(workers=0)) == results


def huge_page(divisions: int = 20_000) -> bytes:
    """About 2.8 MB of HTML that trafilatura needs several seconds for."""
    blocks = (
        f"<div class='c{i % 7}'><p>Paragraph {i} says little, in many words, again.</p>"
        f"<a href='/x{i}'>link {i}</a></div>"
        for i in range(divisions)
    )
    return ("<html><body>" + "".join(blocks) + "</body></html>").encode()


def test_a_page_over_the_time_limit_times_out_and_the_others_come_back():
    # 0.5 s is far above what a small page takes (~0.02 s) and far below the huge page.
    settings = ExtractSettings(workers=2, time_limit_s=0.5, chunk_size=4)
    small = [
        page(article_html(title=f"Story {i}").encode(), url=f"https://b.example/{i}")
        for i in range(6)
    ]
    pages = [*small[:3], page(huge_page(), url="https://b.example/huge"), *small[3:]]
    results = extract_pages(pages, settings)
    assert results[3] == Verdict("extract", "timeout", "over 0.5 s")
    for i in (0, 1, 2, 4, 5, 6):
        assert isinstance(results[i], Document), results[i]
        assert results[i].url == pages[i].url
    # The killed worker was replaced: the pool keeps working.
    again = extract_pages(small[:2], settings)
    assert all(isinstance(result, Document) for result in again)


def test_a_worker_that_dies_costs_only_its_page():
    # Stands in for lxml crashing (segfault) or the kernel's OOM killer on one page.
    pages = [page(huge_page(), url="https://c.example/huge"), page(article_html().encode())]
    with ExtractionPool(workers=1) as pool:
        killer = threading.Thread(target=kill_worker_when_busy, args=(pool,))
        killer.start()
        results = pool.run(pages, ExtractSettings(workers=1, time_limit_s=60))
        killer.join()
    assert results[0] == Verdict("extract", "worker_crashed", f"exit code -{int(signal.SIGKILL)}")
    assert isinstance(results[1], Document)


def kill_worker_when_busy(pool: ExtractionPool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [w for w in pool._workers if w.assigned]
        if busy:
            time.sleep(0.2)  # let it get into the huge page
            os.kill(busy[0].process.pid, signal.SIGKILL)
            return
        time.sleep(0.01)


def test_a_private_pool_closes_its_workers():
    with ExtractionPool(workers=1) as pool:
        results = pool.run([page(article_html().encode())], ExtractSettings(workers=1))
        assert isinstance(results[0], Document)
        processes = [worker.process for worker in pool._workers]
    assert processes and not any(process.is_alive() for process in processes)


def test_settings_reject_nonsense():
    with pytest.raises(ValueError, match="time_limit_s"):
        ExtractSettings(time_limit_s=0)
    with pytest.raises(ValueError, match="workers"):
        ExtractSettings(workers=-1)


def test_filters_can_run_inside_the_extraction_workers():
    """extract_pages(..., filters) drops documents with the filter's verdict, in the worker."""
    import random

    from tasks.corpus.filters import FilterSettings
    from tasks.corpus.miniweb import GERMAN, Article, build_articles, render_page

    english = build_articles(2, seed=0)[0]
    german = Article("/de.html", "Das Leben im Dorf", "Hans Muster", "2019-01-01", tuple(GERMAN))
    pages = [
        Page(
            url=a.path,
            final_url=a.path,
            status=200,
            content_type="text/html; charset=utf-8",
            body=render_page(a, [], random.Random(0), lang=lang).encode(),
            fetched_at="",
        )
        for a, lang in ((english, "en"), (german, "de"))
    ]
    settings = ExtractSettings(workers=1)
    kept, dropped = extract_pages(pages, settings, FilterSettings())
    assert isinstance(kept, Document) and english.paragraphs[0][:40] in kept.text
    assert isinstance(dropped, Verdict)
    assert (dropped.stage, dropped.reason) == ("filter", "not_english")
    # Without filters the German page is just extracted.
    assert isinstance(extract_pages(pages, settings)[1], Document)
