"""What the mini-web serves: a path for every article page, and one page for every way the
web goes wrong (the bad cases). The text is in `articles.py`, the HTML in `pages.py`.

The article text comes from material that ships with Python: the pydoc topic help texts
(`pydoc_data.topics`) and standard-library docstrings, so nothing is downloaded and the
pages are the same on every machine with the same Python. Each page wraps its article in
the boilerplate of a real news site (cookie banner, navigation, sidebar ads, comments,
footer), so that text extraction has something to strip.

Everything here is data and pure functions: `build_site(articles, seed)` returns a `Site`
that says what each path answers (a `Response`), and the same seed gives the same site,
byte for byte. Turning those answers into HTTP is the server's job (`server.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from tasks.corpus.miniweb.articles import (
    ACCENTED,
    FRENCH,
    GERMAN,
    RESERVED_PARAGRAPHS,
    Article,
    build_articles,
    change_a_few_words,
    paragraph_pool,
)
from tasks.corpus.miniweb.pages import (
    SCRIPT_ONLY_PAGE,
    ascii_quotes,
    png_bytes,
    render_page,
    render_xhtml,
    with_invalid_utf8,
)

# An address in a private range: following a redirect there must be refused.
PRIVATE_TARGET = "http://10.255.255.1/internal/admin"
METADATA_TARGET = "http://169.254.169.254/latest/meta-data/"


@dataclass(frozen=True)
class BadCase:
    """One way the web goes wrong, served at `path`.

    `fetch` is the outcome the fetcher should reach with test-like settings (a timeout
    below `stall_s`, a body cap below `huge_bytes`, private addresses refused except the
    mini-web's own): "ok", or a fetch verdict reason. `later` says what a later stage
    should make of a page that fetches fine. `leaves_machine`: following it sends packets
    to an outside or private address, so only tests inside a loopback-only network
    namespace may fetch it.
    """

    name: str
    path: str
    fetch: str
    later: str = ""
    leaves_machine: bool = False


# ---------------------------------------------------------------------------------------
# What a path answers. The server (server.py) turns each of these into HTTP; the ones
# that depend on the server's settings (how long to stall, how big is huge, Retry-After)
# or on its counters (which request is the first) are described here and done there.


@dataclass(frozen=True)
class StaticPage:
    """200 with these bytes (after the server's `delay_s`, like a busy site)."""

    content_type: str
    body: bytes


@dataclass(frozen=True)
class ErrorPage:
    """Always this status, with a short text/plain body."""

    status: int
    body: bytes


@dataclass(frozen=True)
class Redirect:
    status: int
    location: str  # as sent: relative locations stay relative


@dataclass(frozen=True)
class FailsFirst:
    """`status` (500, or 429 with the server's Retry-After) for the first request since
    the server's last `reset_stats`, then `page` as UTF-8 HTML: a failure a retry fixes."""

    status: int
    page: bytes


@dataclass(frozen=True)
class StallsMidBody:
    """Promise 100 kB, send 2 kB, then go quiet for the server's `stall_s`."""


@dataclass(frozen=True)
class Oversized:
    """The server's `huge_bytes` of HTML, with a Content-Length or ended by closing."""

    declare_length: bool


Response = StaticPage | ErrorPage | Redirect | FailsFirst | StallsMidBody | Oversized

REDIRECT_CHAIN = "/redirect/chain/"  # /redirect/chain/N: N more redirects to the landing page


@dataclass
class Site:
    """The whole site: its articles, what each path answers, and the bad cases."""

    articles: list[Article]
    responses: dict[str, Response] = field(default_factory=dict)
    bad_cases: list[BadCase] = field(default_factory=list)

    def response(self, path: str) -> Response | None:
        """What `path` answers; None for a 404."""
        if path.startswith(REDIRECT_CHAIN) and path.rsplit("/", 1)[1].isdigit():
            left = int(path.rsplit("/", 1)[1])
            return Redirect(302, str(left - 1) if left > 0 else "/redirect/landing.html")
        return self.responses.get(path)


def default_robots_txt(crawl_delay: int | None) -> str:
    """Our robots.txt: one bot banned, /private/ closed to all, an optional Crawl-delay."""
    delay = f"Crawl-delay: {crawl_delay}\n" if crawl_delay is not None else ""
    return (
        "# robots.txt of the gpt2lab mini-web\n"
        "User-agent: BadBot\nDisallow: /\n\n"
        f"User-agent: *\nDisallow: /private/\n{delay}"
    )


# ---------------------------------------------------------------------------------------
# The site map: every article, then every bad case


def build_site(article_count: int, seed: int) -> Site:
    """`article_count` article pages and one page per bad case, the same for the same seed."""
    if article_count < 2:
        raise ValueError(f"articles={article_count}: at least 2 (the duplicate pages copy two)")
    site = Site(build_articles(article_count, seed))
    # One generator for every page, in this order: the bytes depend on the seed only.
    rng = random.Random(seed)
    articles = site.articles
    for index, article in enumerate(articles):
        related = [articles[(index + k) % len(articles)] for k in (1, 3, 7, 11)]
        site.responses[article.path] = _html(render_page(article, related, rng))
    _add_bad_cases(site, rng)
    return site


def _html(text: str) -> StaticPage:
    return StaticPage("text/html; charset=utf-8", text.encode("utf-8"))


def _add_bad_cases(site: Site, rng: random.Random) -> None:
    """One page per way the web goes wrong, each listed in `site.bad_cases` with the fetch
    outcome it should get (and what later stages should make of it)."""
    articles, pages = site.articles, site.responses
    reserved = [p for _, p in paragraph_pool()[-RESERVED_PARAGRAPHS:]]

    def special(path: str, title: str, paragraphs) -> Article:
        return Article(path, title, "Staff writer", "2017-06-01", tuple(paragraphs))

    def page(article: Article, **options) -> str:
        return render_page(article, articles[:4], rng, **options)

    def add(name: str, path: str, fetch: str, later: str = "", leaves: bool = False) -> None:
        site.bad_cases.append(BadCase(name, path, fetch, later, leaves))

    # robots.txt and plain HTTP errors
    pages["/private/members-only.html"] = StaticPage("text/html", b"<p>Members only</p>")
    add("robots_disallowed", "/private/members-only.html", "robots_disallowed")
    add("not_found", "/missing/page-404.html", "http_404")  # not in the table: a 404
    pages["/missing/page-410.html"] = ErrorPage(410, b"Gone")
    add("gone", "/missing/page-410.html", "http_410")

    # Failures that a retry fixes, and one that it does not
    landing = special("/flaky/500-once.html", "Back after a hiccup", reserved[0:3])
    pages[landing.path] = FailsFirst(500, page(landing).encode("utf-8"))
    add("server_error_once", landing.path, "ok", "kept (second attempt)")
    landing = special("/flaky/429-once.html", "Worth the wait", reserved[3:6])
    pages[landing.path] = FailsFirst(429, page(landing).encode("utf-8"))
    add("rate_limited_once", landing.path, "ok", "kept (after Retry-After)")
    pages["/flaky/500-always.html"] = ErrorPage(500, b"Internal Server Error")
    add("server_error_always", "/flaky/500-always.html", "http_500")

    # Bodies that are too slow, too big or not HTML
    pages["/slow/stall-mid-body.html"] = StallsMidBody()
    add("stall_mid_body", "/slow/stall-mid-body.html", "timeout")
    pages["/huge/streamed.html"] = Oversized(declare_length=False)
    add("too_large_streamed", "/huge/streamed.html", "too_large")
    pages["/huge/declared.html"] = Oversized(declare_length=True)
    add("too_large_declared", "/huge/declared.html", "too_large")
    pages["/media/picture.png"] = StaticPage("image/png", png_bytes())
    add("image_png", "/media/picture.png", "not_html")
    pages["/media/picture-mislabelled.html"] = StaticPage("text/html", png_bytes(seed=1))
    add(
        "png_as_html",
        "/media/picture-mislabelled.html",
        "binary_content",
        "binary_content; without sniffing, extraction should drop it",
    )
    pages["/formats/notes.txt"] = StaticPage("text/plain; charset=utf-8", b"Just notes.\n" * 50)
    add("plain_text", "/formats/notes.txt", "not_html")
    xhtml = special("/formats/page.xhtml", "Strictly well-formed", reserved[6:9])
    pages[xhtml.path] = StaticPage("application/xhtml+xml", render_xhtml(xhtml).encode())
    add("xhtml", xhtml.path, "ok", "kept")

    # Redirects
    pages["/redirect/loop-a.html"] = Redirect(302, "loop-b.html")
    pages["/redirect/loop-b.html"] = Redirect(302, "loop-a.html")
    add("redirect_loop", "/redirect/loop-a.html", "redirect_loop")
    add("too_many_redirects", REDIRECT_CHAIN + "12", "too_many_redirects")
    moved = special("/redirect/landing.html", "Our new home", reserved[9:12])
    pages[moved.path] = _html(page(moved))
    pages["/redirect/moved.html"] = Redirect(301, moved.path)
    add("redirect_ok", "/redirect/moved.html", "ok", "kept, final_url /redirect/landing.html")
    pages["/redirect/to-private.html"] = Redirect(302, PRIVATE_TARGET)
    add("redirect_to_private", "/redirect/to-private.html", "private_address", leaves=True)
    pages["/redirect/to-metadata.html"] = Redirect(302, METADATA_TARGET)
    add("redirect_to_metadata", "/redirect/to-metadata.html", "private_address", leaves=True)

    # Encodings
    broken = special("/encoding/invalid-utf8.html", "Bytes gone wrong", reserved[12:15])
    body = with_invalid_utf8(page(broken).encode())
    pages[broken.path] = StaticPage("text/html; charset=utf-8", body)
    add("invalid_utf8", broken.path, "ok", "extraction decodes with replacement characters")
    latin = special("/encoding/latin1.html", "A corner café", [ACCENTED[0], *reserved[15:18]])
    latin = replace(latin, paragraphs=tuple(map(ascii_quotes, latin.paragraphs)))
    body = page(latin, meta_charset=None).encode("latin-1", errors="replace")
    pages[latin.path] = StaticPage("text/html; charset=iso-8859-1", body)
    add("latin1_header", latin.path, "ok", "extraction decodes latin-1 (declared in the header)")
    latin = special("/encoding/latin1-meta.html", "Smörgåsbord", [ACCENTED[1], *reserved[18:21]])
    latin = replace(latin, paragraphs=tuple(map(ascii_quotes, latin.paragraphs)))
    body = page(latin, meta_charset="iso-8859-1").encode("latin-1", errors="replace")
    pages[latin.path] = StaticPage("text/html", body)
    add("latin1_meta", latin.path, "ok", "extraction decodes latin-1 (declared in a meta tag)")

    # Nothing to extract, or the wrong language
    pages["/empty/blank.html"] = StaticPage("text/html; charset=utf-8", b"")
    add("empty", "/empty/blank.html", "ok", "extraction drops it: no text")
    pages["/empty/script-only.html"] = StaticPage("text/html", SCRIPT_ONLY_PAGE.encode())
    add("script_only", "/empty/script-only.html", "ok", "extraction drops it: no text")
    german = special("/intl/de/dorfleben.html", "Das Leben im Dorf", GERMAN)
    pages[german.path] = _html(page(german, lang="de"))
    add("german", german.path, "ok", "the language filter drops it")
    french = special("/intl/fr/vie-locale.html", "La vie au bord de la Loire", FRENCH)
    pages[french.path] = _html(page(french, lang="fr"))
    add("french", french.path, "ok", "the language filter drops it")

    # Duplicates: the same bytes at another URL, and the same article a little edited
    original = articles[0]
    mirror = "/mirror/" + original.path.rsplit("/", 1)[1]
    pages[mirror] = pages[original.path]
    add("exact_duplicate", mirror, "ok", f"dedup drops it: the same as {original.path}")
    near = change_a_few_words(articles[1], rng)
    near = replace(near, path="/syndicated/" + articles[1].path.rsplit("/", 1)[1])
    pages[near.path] = _html(page(near))
    add("near_duplicate", near.path, "ok", f"dedup drops it: nearly {articles[1].path}")
