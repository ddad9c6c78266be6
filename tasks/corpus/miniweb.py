"""A small local web for demos and tests: realistic article pages plus every bad case.

`MiniWeb` serves, on 127.0.0.1 and a free port, a few hundred article pages that look
like a real news site (cookie banner, navigation, sidebar ads, comments, footer around
the article), so that text extraction has boilerplate to strip. Their text comes from
material that ships with Python: the pydoc topic help texts (`pydoc_data.topics`) and
standard-library docstrings, so nothing is downloaded and the pages are the same on every
machine with the same Python. Beside them it serves one page for each way the web goes
wrong (404, a 429 with Retry-After, a server that stalls mid-body, 20 MB of HTML, a PNG
labelled text/html, a redirect loop, latin-1, German, duplicates, ...): `MiniWeb.bad_cases`
lists them with the fetch outcome each should get. `write_submissions_dump` writes a
Reddit-style link dump pointing at it.

Requests are counted per path (`hits`), and the in-flight maximum is tracked, so tests
can check politeness from the server's side. Run it by hand with
`python -m tasks.corpus.miniweb --port 8000`; it needs only the standard library
(and zstandard to write a .zst dump).
"""

from __future__ import annotations

import argparse
import gzip
import html
import importlib
import inspect
import io
import json
import os
import random
import re
import signal
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

SITE_NAME = "The Interpreter Times"
# An address in a private range: following a redirect there must be refused.
PRIVATE_TARGET = "http://10.255.255.1/internal/admin"
METADATA_TARGET = "http://169.254.169.254/latest/meta-data/"

# Standard-library modules whose docstrings are long English prose. Fixed and sorted, so
# that the pages depend only on the Python version and the seed.
DOCSTRING_MODULES = (
    "argparse", "ast", "bisect", "calendar", "codecs", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "decimal", "difflib", "doctest",
    "email.message", "enum", "fractions", "ftplib", "functools", "gettext", "gzip", "heapq",
    "http.client", "http.server", "imaplib", "inspect", "io", "json", "locale", "logging",
    "mailbox", "numbers", "operator", "optparse", "pathlib", "pickle", "pprint", "queue",
    "random", "sched", "selectors", "shelve", "shutil", "smtplib", "socketserver",
    "statistics", "string", "symtable", "tarfile", "tempfile", "textwrap", "threading",
    "timeit", "tokenize", "trace", "traceback", "urllib.parse", "urllib.request", "uuid",
    "weakref", "xml.dom.minidom", "zipfile",
)  # fmt: skip
# Paragraphs kept out of the articles, for the special pages (landing pages, encodings),
# so that those pages are not near-duplicates of an article.
RESERVED_PARAGRAPHS = 24

AUTHORS = (
    "Ada Whitfield", "Ben Okafor", "Carmen Ruiz", "Dmitri Volkov", "Emma Lindqvist",
    "Farah Haddad", "Gustavo Pereira", "Hana Sato", "Ian McAllister", "Julia Novak",
)  # fmt: skip
TITLE_TEMPLATES = (
    "A closer look at {}", "Understanding {}", "{}, explained", "Notes on {}",
    "What every programmer should know about {}", "{}: a practical guide",
    "Getting {} right", "The surprising details of {}",
)  # fmt: skip
COMMENTS = (
    "Great write-up, thanks! I finally understand this.",
    "I have been using Python for ten years and still learned something here.",
    "Could you do a follow-up with more examples?",
    "This is exactly what I was looking for last week.",
    "Not sure I agree with the second part, but well explained.",
    "Bookmarked. Sharing this with my team.",
    "The docs say the same thing, but this is easier to read.",
)
COMMENTERS = ("pythonista42", "code_monkey", "jdoe", "lambda_lover", "tabs_not_spaces")
ADS = (
    "Try CloudHost Pro free for 30 days! Fast servers, no credit card required.",
    "Learn data science in 12 weeks. Enrol today and save 40%.",
    "The mechanical keyboard developers love. Order now, ships tomorrow.",
)

GERMAN = (
    "Der kleine Ort am Rand des Schwarzwalds hat in den letzten Jahren eine erstaunliche "
    "Entwicklung erlebt. Wo früher nur wenige Höfe standen, gibt es heute eine Bäckerei, "
    "einen Wochenmarkt und eine Bibliothek, die jeden Samstag bis spät am Abend geöffnet ist. "
    "Die Bewohner erzählen gern, wie sehr sich das Leben im Dorf verändert hat, seit die neue "
    "Bahnlinie eröffnet wurde.",
    "Besonders beliebt ist der Markt auf dem Kirchplatz. Dort verkaufen Bauern aus der "
    "Umgebung Käse, Honig, frisches Gemüse und Brot aus dem Holzofen. Viele Familien kommen "
    "schon früh am Morgen, um die besten Äpfel zu bekommen, und bleiben danach noch auf einen "
    "Kaffee im kleinen Café gegenüber dem Rathaus.",
    "Die Gemeinde plant nun, im nächsten Frühjahr einen Radweg entlang des Flusses zu bauen. "
    "Der Bürgermeister hofft, dass dadurch mehr Gäste in die Region kommen, ohne dass der "
    "Verkehr auf den schmalen Straßen weiter zunimmt. Kritiker befürchten allerdings, dass die "
    "Kosten höher ausfallen werden als geplant und dass die Arbeiten die Ruhe der Natur stören.",
    "Trotz aller Diskussionen sind sich die meisten Bewohner in einem Punkt einig: Das Dorf "
    "soll ein Ort bleiben, an dem man sich kennt und gegenseitig hilft. Gerade im Winter, wenn "
    "der Schnee die Wege bedeckt, zeigt sich dieser Zusammenhalt besonders deutlich.",
)
FRENCH = (
    "La petite ville située au bord de la Loire attire chaque été des milliers de visiteurs. "
    "Ils viennent pour ses châteaux, ses vignobles et ses marchés colorés, mais aussi pour la "
    "tranquillité de ses rues pavées. Les habitants aiment raconter l'histoire de leur ville, "
    "qui remonte au Moyen Âge.",
    "Le marché du samedi matin est sans doute le moment le plus animé de la semaine. Les "
    "producteurs de la région y vendent des fromages, du miel, des légumes de saison et du "
    "pain cuit au feu de bois. Beaucoup de familles s'y retrouvent avant de prendre un café "
    "sur la place de l'église.",
    "La municipalité envisage de créer une piste cyclable le long du fleuve au printemps "
    "prochain. Le maire espère ainsi attirer davantage de touristes sans augmenter la "
    "circulation dans les rues étroites du centre. Certains habitants craignent toutefois que "
    "les travaux coûtent plus cher que prévu et troublent le calme de la nature.",
    "Malgré ces débats, la plupart des habitants partagent la même conviction : la ville doit "
    "rester un lieu où l'on se connaît et où l'on s'entraide. En hiver surtout, lorsque le "
    "brouillard recouvre les quais, cette solidarité se remarque plus que jamais.",
)
# English with accented words, for the latin-1 pages (every character fits in latin-1).
ACCENTED = (
    "The café on the corner of Rue Saint-Honoré has served the same crème brûlée since 1962. "
    "Its owner, Zoë Müller, calls the recipe naïve: eggs, cream, sugar and patience. Regulars "
    "from the façade workshops nearby drop in after work, order a café au lait and argue "
    "about football, politics and whether the piñata at last year's fête was a good idea.",
    "Down the street, the smörgåsbord at Björn's attracts a different crowd. Señor García, a "
    "retired maître d', insists that the pâté is the best in town, and nobody has yet dared "
    "to contradict him. The décor is plain, the coöperative that runs the place is proud of "
    "it, and the rösti is served until midnight.",
)


@dataclass(frozen=True)
class Article:
    """One generated article: where it is served and what its main text is."""

    path: str
    title: str
    author: str
    published: str  # ISO date
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The main text, one paragraph per line: what a good extractor should return."""
        return "\n".join(self.paragraphs)


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


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    path: str
    started: float  # time.monotonic() when the request line was read
    user_agent: str | None
    host: str | None


# ---------------------------------------------------------------------------------------
# Text: prose paragraphs from material that ships with Python


def _prose(text: str) -> list[str]:
    """The paragraphs of a help text or docstring that read as prose, one line each."""
    kept = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = block.split("\n")
        # Indented lines are code or tables, bullets are lists: not article prose.
        if any(line.startswith((" ", "\t", ">>>", "-", "*", "+", "|")) for line in lines):
            continue
        # One space between words, as a browser (and an extractor) shows it.
        paragraph = " ".join(block.split())
        letters = sum(c.isalpha() or c.isspace() for c in paragraph)
        if (
            200 <= len(paragraph) <= 1500
            and paragraph[0].isupper()
            and paragraph.endswith(".")
            and letters / len(paragraph) > 0.85
        ):
            kept.append(paragraph)
    return kept


def _docstrings(module_name: str) -> list[str]:
    """The docstrings of a module, its public classes and functions and their methods."""
    module = importlib.import_module(module_name)
    docs = [module.__doc__ or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(obj.__doc__ or "")
        if inspect.isclass(obj):
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and inspect.isfunction(member):
                    docs.append(member.__doc__ or "")
    return docs


@lru_cache(maxsize=1)
def paragraph_pool() -> tuple[tuple[str, str], ...]:
    """(topic, paragraph) pairs: pydoc topics first, then docstrings; no repeats."""
    from pydoc_data.topics import topics

    pool: dict[str, str] = {}
    for key in sorted(topics):
        for paragraph in _prose(topics[key]):
            pool.setdefault(paragraph, key.replace("-", " "))
    for module_name in DOCSTRING_MODULES:
        for doc in _docstrings(module_name):
            for paragraph in _prose(doc):
                pool.setdefault(paragraph, f"the {module_name} module")
    return tuple((topic, paragraph) for paragraph, topic in pool.items())


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def build_articles(count: int, seed: int) -> list[Article]:
    """`count` articles of 4 to 7 paragraphs each, the same for the same seed.

    The first articles take consecutive paragraphs (same topic, so they read coherently);
    when the pool runs out, later ones draw a fresh shuffle. No paragraph repeats within a
    pass, so two articles share at most a paragraph or two: never near-duplicates.
    """
    rng = random.Random(seed)
    pool = paragraph_pool()[:-RESERVED_PARAGRAPHS]
    start = rng.randrange(len(pool))
    order = list(range(start, len(pool))) + list(range(start))
    cursor = 0
    first_day = datetime(2017, 1, 1, tzinfo=UTC)
    articles = []
    for index in range(count):
        size = rng.randint(4, 7)
        if cursor + size > len(order):
            order, cursor = rng.sample(range(len(pool)), len(pool)), 0
        chosen = [pool[i] for i in order[cursor : cursor + size]]
        cursor += size
        topic = chosen[0][0]
        title = rng.choice(TITLE_TEMPLATES).format(topic)
        title = title[0].upper() + title[1:]
        day = first_day + timedelta(days=rng.randrange(365))
        articles.append(
            Article(
                path=f"/articles/{index:04d}-{_slug(title)}.html",
                title=title,
                author=rng.choice(AUTHORS),
                published=day.date().isoformat(),
                paragraphs=tuple(paragraph for _, paragraph in chosen),
            )
        )
    return articles


def _change_a_few_words(article: Article, rng: random.Random, count: int = 6) -> Article:
    """A near-duplicate: the same article with `count` words replaced."""
    paragraphs = [p.split(" ") for p in article.paragraphs]
    spots = [(i, j) for i, words in enumerate(paragraphs) for j in range(len(words))]
    for i, j in rng.sample(spots, count):
        paragraphs[i][j] = rng.choice(("indeed", "often", "really", "notably", "usually"))
    return replace(article, paragraphs=tuple(" ".join(words) for words in paragraphs))


# ---------------------------------------------------------------------------------------
# HTML: an article wrapped in the boilerplate of a real news site


def render_page(
    article: Article,
    related: list[Article],
    rng: random.Random,
    *,
    lang: str = "en",
    meta_charset: str | None = "utf-8",
) -> str:
    """A full page: cookie banner, header and navigation, the article, a sidebar with ads
    and popular links, a comments section and a footer, with scripts sprinkled around."""
    e = html.escape
    meta = f'<meta charset="{meta_charset}">\n' if meta_charset else ""
    paragraphs = "\n".join(f"<p>{e(p)}</p>" for p in article.paragraphs)
    popular = "\n".join(f'<li><a href="{r.path}">{e(r.title)}</a></li>' for r in related)
    comments = "\n".join(
        f'<div class="comment"><p class="comment-author">{rng.choice(COMMENTERS)} said:</p>'
        f"<p>{e(rng.choice(COMMENTS))}</p></div>"
        for _ in range(rng.randint(1, 4))
    )
    minutes = max(1, len(article.text.split()) // 200)
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
{meta}<title>{e(article.title)} | {SITE_NAME}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="author" content="{e(article.author)}">
<link rel="stylesheet" href="/static/site.css">
<script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}
gtag('js', new Date()); gtag('config', 'G-MINIWEB');</script>
</head>
<body>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience and
to show you personalised ads. By continuing to browse you accept our
<a href="/privacy">cookie policy</a>. <button>Accept all</button> <button>Settings</button></div>
<header class="site-header">
<a class="logo" href="/">{SITE_NAME}</a>
<nav class="main-nav"><ul>
<li><a href="/">Home</a></li><li><a href="/topics/language">Language</a></li>
<li><a href="/topics/library">Library</a></li><li><a href="/topics/tools">Tools</a></li>
<li><a href="/about">About</a></li><li><a href="/subscribe">Subscribe</a></li>
</ul></nav>
<form class="search" action="/search"><input name="q" placeholder="Search"></form>
</header>
<div class="breadcrumbs"><a href="/">Home</a> &rsaquo; <a href="/topics/language">Language</a></div>
<main>
<article class="post">
<h1 class="entry-title">{e(article.title)}</h1>
<p class="byline">By <span class="author">{e(article.author)}</span> &middot;
<time datetime="{article.published}">{article.published}</time> &middot; {minutes} min read</p>
<div class="entry-content">
{paragraphs}
</div>
<div class="share">Share this article: <a href="/share/twitter">Twitter</a>
<a href="/share/facebook">Facebook</a> <a href="/share/email">Email</a></div>
</article>
<aside class="sidebar">
<div class="ad ad-300x250"><span class="ad-label">Advertisement</span>
<a href="/ads/click"><img src="/ads/banner.png" alt="Sponsored"></a>
<p>{e(rng.choice(ADS))}</p></div>
<div class="widget popular"><h3>Most popular</h3><ul>
{popular}
</ul></div>
<div class="newsletter"><h3>Newsletter</h3><p>Get the best stories in your inbox every
morning.</p><form><input type="email" placeholder="you@example.com"><button>Sign up</button>
</form></div>
</aside>
<section id="comments" class="comments">
<h2>Comments</h2>
{comments}
<form class="comment-form"><textarea placeholder="Leave a comment"></textarea>
<button>Post comment</button></form>
</section>
</main>
<footer class="site-footer">
<p>&copy; 2017 {SITE_NAME}. All rights reserved.</p>
<nav><a href="/about">About</a> | <a href="/contact">Contact</a> |
<a href="/privacy">Privacy policy</a> | <a href="/terms">Terms of use</a></nav>
</footer>
<script src="/static/analytics.js" async></script>
</body>
</html>
"""


def render_xhtml(article: Article) -> str:
    """A well-formed XHTML page, served as application/xhtml+xml."""
    e = html.escape
    paragraphs = "\n".join(f"<p>{e(p)}</p>" for p in article.paragraphs)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en" xml:lang="en">
<head><meta charset="utf-8" /><title>{e(article.title)} | {SITE_NAME}</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>{e(article.title)}</h1>
{paragraphs}
</article>
<footer><p>&#169; 2017 {SITE_NAME}</p></footer>
</body>
</html>
"""


SCRIPT_ONLY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Loading...</title>
<script>window.__APP_STATE__ = {"route": "/app", "user": null, "flags": {"beta": true}};</script>
<script src="/static/bundle.js"></script></head>
<body><div id="root"></div>
<script>document.getElementById("root").innerHTML = "<p>" + "Please enable JavaScript." + "</p>";
for (var i = 0; i < 10; i++) { console.log("booting module " + i); }</script>
<noscript></noscript></body></html>
"""


def _ascii_quotes(text: str) -> str:
    """Typographic quotes and dashes -> ASCII, so the text fits in latin-1."""
    table = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"}
    return "".join(table.get(c, c) for c in text).replace("\u2014", "--").replace("\u2026", "...")


def png_bytes(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A small valid PNG of random pixels (binary, incompressible, clearly not text)."""
    rng = random.Random(seed)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _with_invalid_utf8(body: bytes) -> bytes:
    """Insert byte sequences that are not UTF-8 (a lone 0xff, a broken 2-byte sequence,
    an encoded surrogate) between words of the article."""
    for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80"):
        body = body.replace(b" and ", b" and " + bad + b" ", 2)
    return body


# ---------------------------------------------------------------------------------------
# The server


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must never keep the process alive
    request_queue_size = 128  # bursts of connections are expected, not an attack
    web: MiniWeb

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up early are part of the tests, not errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    server_version = "MiniWeb/1.0"
    timeout = 30  # an idle keep-alive connection frees its thread after this
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body then
    # waits for the client's delayed ACK (about 40 ms a response on Linux).
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        web = self.server.web
        path = urlsplit(self.path).path
        hit = web._arrive(path, self.headers)
        try:
            web._respond(self, path, hit)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            web._leave()

    def log_message(self, format: str, *args) -> None:
        pass  # quiet: tests and demos read the counters instead

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send(status, b"", "text/html; charset=utf-8", Location=location)


class MiniWeb:
    """A local website with `articles` article pages and one page per bad case.

    Use as a context manager (or `start()` / `stop()`); it serves from a background thread,
    one thread per connection. `seed` fixes the articles; `crawl_delay` adds a Crawl-delay
    (whole seconds) to robots.txt; `robots_txt=None` makes robots.txt a 404, and
    `robots_status` serves it with another status; `delay_s` slows every HTML page down;
    `stall_s` is how long the stalling page waits mid-body; `huge_bytes` is the size of
    the oversized pages; `retry_after_s` is the 429's Retry-After.
    """

    DEFAULT_ROBOTS = "default"

    def __init__(
        self,
        articles: int = 200,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crawl_delay: int | None = None,
        robots_txt: str | None = DEFAULT_ROBOTS,
        robots_status: int = 200,
        delay_s: float = 0.0,
        stall_s: float = 60.0,
        huge_bytes: int = 20_000_000,
        retry_after_s: int = 1,
    ) -> None:
        if articles < 2:
            raise ValueError(f"articles={articles}: at least 2 (the duplicate pages copy two)")
        self.host, self.port = host, port
        self.delay_s, self.stall_s = delay_s, stall_s
        self.huge_bytes, self.retry_after_s = huge_bytes, retry_after_s
        self.robots_status = robots_status
        self.robots_txt = self._robots_text(crawl_delay) if robots_txt == "default" else robots_txt
        self._articles = build_articles(articles, seed)
        self._pages: dict[str, tuple[str, bytes]] = {}  # path -> (content type, body)
        self._dynamic: dict[str, Callable[[_Handler, int], None]] = {}
        self.bad_cases: list[BadCase] = []
        self._build_site(random.Random(seed))

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._hits: Counter[str] = Counter()
        self._bytes_sent: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- what it serves -----------------------------------------------------------------

    @property
    def articles(self) -> list[str]:
        """The paths of the good article pages."""
        return [article.path for article in self._articles]

    def article(self, path: str) -> Article:
        return next(article for article in self._articles if article.path == path)

    def case(self, name: str) -> BadCase:
        return next(case for case in self.bad_cases if case.name == name)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mini-web is not running: use it as a context manager")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def _robots_text(crawl_delay: int | None) -> str:
        delay = f"Crawl-delay: {crawl_delay}\n" if crawl_delay is not None else ""
        return (
            "# robots.txt of the gpt2lab mini-web\n"
            "User-agent: BadBot\nDisallow: /\n\n"
            f"User-agent: *\nDisallow: /private/\n{delay}"
        )

    def _build_site(self, rng: random.Random) -> None:
        articles = self._articles
        for index, article in enumerate(articles):
            related = [articles[(index + k) % len(articles)] for k in (1, 3, 7, 11)]
            self._html(article.path, render_page(article, related, rng))
        reserved = [p for _, p in paragraph_pool()[-RESERVED_PARAGRAPHS:]]

        def special(path: str, title: str, paragraphs) -> Article:
            return Article(path, title, "Staff writer", "2017-06-01", tuple(paragraphs))

        def page(article: Article, **options) -> str:
            return render_page(article, articles[:4], rng, **options)

        def add(name: str, path: str, fetch: str, later: str = "", leaves: bool = False):
            self.bad_cases.append(BadCase(name, path, fetch, later, leaves))

        # robots.txt and plain HTTP errors
        self._pages["/private/members-only.html"] = ("text/html", b"<p>Members only</p>")
        add("robots_disallowed", "/private/members-only.html", "robots_disallowed")
        add("not_found", "/missing/page-404.html", "http_404")  # not in the table: a 404
        self._dynamic["/missing/page-410.html"] = lambda h, _: h.send(410, b"Gone", "text/plain")
        add("gone", "/missing/page-410.html", "http_410")

        # Failures that a retry fixes, and one that it does not
        landing = special("/flaky/500-once.html", "Back after a hiccup", reserved[0:3])
        self._dynamic[landing.path] = self._fails_first(page(landing), 500)
        add("server_error_once", landing.path, "ok", "kept (second attempt)")
        landing = special("/flaky/429-once.html", "Worth the wait", reserved[3:6])
        self._dynamic[landing.path] = self._fails_first(page(landing), 429)
        add("rate_limited_once", landing.path, "ok", "kept (after Retry-After)")
        self._dynamic["/flaky/500-always.html"] = lambda h, _: h.send(
            500, b"Internal Server Error", "text/plain"
        )
        add("server_error_always", "/flaky/500-always.html", "http_500")

        # Bodies that are too slow, too big or not HTML
        self._dynamic["/slow/stall-mid-body.html"] = self._stall
        add("stall_mid_body", "/slow/stall-mid-body.html", "timeout")
        self._dynamic["/huge/streamed.html"] = self._huge(declare_length=False)
        add("too_large_streamed", "/huge/streamed.html", "too_large")
        self._dynamic["/huge/declared.html"] = self._huge(declare_length=True)
        add("too_large_declared", "/huge/declared.html", "too_large")
        self._pages["/media/picture.png"] = ("image/png", png_bytes())
        add("image_png", "/media/picture.png", "not_html")
        self._pages["/media/picture-mislabelled.html"] = ("text/html", png_bytes(seed=1))
        add(
            "png_as_html",
            "/media/picture-mislabelled.html",
            "binary_content",
            "binary_content; without sniffing, extraction should drop it",
        )
        self._pages["/formats/notes.txt"] = ("text/plain; charset=utf-8", b"Just notes.\n" * 50)
        add("plain_text", "/formats/notes.txt", "not_html")
        xhtml = special("/formats/page.xhtml", "Strictly well-formed", reserved[6:9])
        self._pages[xhtml.path] = ("application/xhtml+xml", render_xhtml(xhtml).encode())
        add("xhtml", xhtml.path, "ok", "kept")

        # Redirects
        self._dynamic["/redirect/loop-a.html"] = lambda h, _: h.redirect(302, "loop-b.html")
        self._dynamic["/redirect/loop-b.html"] = lambda h, _: h.redirect(302, "loop-a.html")
        add("redirect_loop", "/redirect/loop-a.html", "redirect_loop")
        add("too_many_redirects", "/redirect/chain/12", "too_many_redirects")
        moved = special("/redirect/landing.html", "Our new home", reserved[9:12])
        self._html(moved.path, page(moved))
        self._dynamic["/redirect/moved.html"] = lambda h, _: h.redirect(301, moved.path)
        add("redirect_ok", "/redirect/moved.html", "ok", "kept, final_url /redirect/landing.html")
        self._dynamic["/redirect/to-private.html"] = lambda h, _: h.redirect(302, PRIVATE_TARGET)
        add("redirect_to_private", "/redirect/to-private.html", "private_address", leaves=True)
        self._dynamic["/redirect/to-metadata.html"] = lambda h, _: h.redirect(302, METADATA_TARGET)
        add("redirect_to_metadata", "/redirect/to-metadata.html", "private_address", leaves=True)

        # Encodings
        broken = special("/encoding/invalid-utf8.html", "Bytes gone wrong", reserved[12:15])
        self._pages[broken.path] = (
            "text/html; charset=utf-8",
            _with_invalid_utf8(page(broken).encode()),
        )
        add("invalid_utf8", broken.path, "ok", "extraction decodes with replacement characters")
        latin = special("/encoding/latin1.html", "A corner café", [ACCENTED[0], *reserved[15:18]])
        latin = replace(latin, paragraphs=tuple(map(_ascii_quotes, latin.paragraphs)))
        body = page(latin, meta_charset=None).encode("latin-1", errors="replace")
        self._pages[latin.path] = ("text/html; charset=iso-8859-1", body)
        add(
            "latin1_header", latin.path, "ok", "extraction decodes latin-1 (declared in the header)"
        )
        latin = special(
            "/encoding/latin1-meta.html", "Smörgåsbord", [ACCENTED[1], *reserved[18:21]]
        )
        latin = replace(latin, paragraphs=tuple(map(_ascii_quotes, latin.paragraphs)))
        body = page(latin, meta_charset="iso-8859-1").encode("latin-1", errors="replace")
        self._pages[latin.path] = ("text/html", body)
        add("latin1_meta", latin.path, "ok", "extraction decodes latin-1 (declared in a meta tag)")

        # Nothing to extract, or the wrong language
        self._pages["/empty/blank.html"] = ("text/html; charset=utf-8", b"")
        add("empty", "/empty/blank.html", "ok", "extraction drops it: no text")
        self._pages["/empty/script-only.html"] = ("text/html", SCRIPT_ONLY_PAGE.encode())
        add("script_only", "/empty/script-only.html", "ok", "extraction drops it: no text")
        german = special("/intl/de/dorfleben.html", "Das Leben im Dorf", GERMAN)
        self._html(german.path, page(german, lang="de"))
        add("german", german.path, "ok", "the language filter drops it")
        french = special("/intl/fr/vie-locale.html", "La vie au bord de la Loire", FRENCH)
        self._html(french.path, page(french, lang="fr"))
        add("french", french.path, "ok", "the language filter drops it")

        # Duplicates: the same bytes at another URL, and the same article a little edited
        original = articles[0]
        self._pages["/mirror/" + original.path.rsplit("/", 1)[1]] = self._pages[original.path]
        add(
            "exact_duplicate",
            "/mirror/" + original.path.rsplit("/", 1)[1],
            "ok",
            f"dedup drops it: the same as {original.path}",
        )
        near = _change_a_few_words(articles[1], rng)
        near = replace(near, path="/syndicated/" + articles[1].path.rsplit("/", 1)[1])
        self._html(near.path, page(near))
        add("near_duplicate", near.path, "ok", f"dedup drops it: nearly {articles[1].path}")

    def _html(self, path: str, text: str) -> None:
        self._pages[path] = ("text/html; charset=utf-8", text.encode("utf-8"))

    # -- dynamic pages ------------------------------------------------------------------

    def _fails_first(self, text: str, status: int) -> Callable[[_Handler, int], None]:
        """Answer `status` to the first request of a path (since the last reset), then
        the page: a transient failure that a retry fixes."""
        body = text.encode("utf-8")

        def respond(handler: _Handler, hit: int) -> None:
            if hit > 1:
                handler.send(200, body, "text/html; charset=utf-8")
            elif status == 429:
                handler.send(
                    429, b"Too Many Requests", "text/plain", Retry_After=str(self.retry_after_s)
                )
            else:
                handler.send(status, b"Internal Server Error", "text/plain")

        return respond

    def _stall(self, handler: _Handler, hit: int) -> None:
        """Promise 100 kB, send 2 kB, then go quiet (until `stall_s` or shutdown)."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"<!DOCTYPE html><html><body><p>" + b"Loading " * 250)
        self._stopping.wait(self.stall_s)
        handler.close_connection = True

    def _huge(self, declare_length: bool) -> Callable[[_Handler, int], None]:
        """`huge_bytes` of HTML written 64 KiB at a time; the bytes that the client took
        are counted, so a test can check that it hung up early."""

        def respond(handler: _Handler, hit: int) -> None:
            path = urlsplit(handler.path).path
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html; charset=utf-8")
            if declare_length:
                handler.send_header("Content-Length", str(self.huge_bytes))
            else:  # no length: the body ends when the connection closes
                handler.send_header("Connection", "close")
                handler.close_connection = True
            handler.end_headers()
            chunk = b"<p>" + b"All work and no play makes a very large page. " * 20 + b"</p>\n"
            chunk = (chunk * (65536 // len(chunk) + 1))[:65536]
            left = self.huge_bytes
            while left > 0 and not self._stopping.is_set():
                piece = chunk[: min(left, len(chunk))]
                handler.wfile.write(piece)
                left -= len(piece)
                with self._lock:
                    self._bytes_sent[path] += len(piece)

        return respond

    def _respond(self, handler: _Handler, path: str, hit: int) -> None:
        if path == "/robots.txt":
            if self.robots_txt is None:
                handler.send(404, b"Not Found", "text/plain")
            else:
                body = self.robots_txt.encode("utf-8")
                handler.send(self.robots_status, body, "text/plain; charset=utf-8")
        elif path in self._dynamic:
            self._dynamic[path](handler, hit)
        elif path.startswith("/redirect/chain/") and path.rsplit("/", 1)[1].isdigit():
            left = int(path.rsplit("/", 1)[1])
            handler.redirect(302, str(left - 1) if left > 0 else "/redirect/landing.html")
        elif path in self._pages:
            if self.delay_s:
                self._stopping.wait(self.delay_s)
            content_type, body = self._pages[path]
            handler.send(200, body, content_type)
        else:
            handler.send(404, b"Not Found", "text/plain")

    # -- counters -------------------------------------------------------------------------

    def _arrive(self, path: str, headers) -> int:
        with self._lock:
            self._hits[path] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            record = RequestRecord(
                path, time.monotonic(), headers.get("User-Agent"), headers.get("Host")
            )
            self._requests.append(record)
            return self._hits[path]

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def hits(self) -> Counter[str]:
        """Requests per path so far (a snapshot; missing paths count 0)."""
        with self._lock:
            return Counter(self._hits)

    @property
    def bytes_sent(self) -> Counter[str]:
        """Body bytes handed to the network per path, for the oversized pages."""
        with self._lock:
            return Counter(self._bytes_sent)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was handling at the same moment."""
        with self._lock:
            return self._max_in_flight

    def reset_stats(self) -> None:
        """Forget the counters (the pages that fail first will fail again)."""
        with self._lock:
            self._hits.clear()
            self._bytes_sent.clear()
            self._requests.clear()
            self._max_in_flight = self._in_flight

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> MiniWeb:
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler)
        self._server.web = self
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes stalled and slow handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> MiniWeb:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------
# A Reddit-style link dump pointing at the mini-web


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def submission_lines(web: MiniWeb, seed: int = 0) -> list[str]:
    """The lines of a Pushshift / Arctic Shift style submissions dump, one JSON object a
    line, sorted by created_utc like the real ones.

    Every article and every bad case is submitted with score >= 3. Then come the lines
    that the link rules should drop: score below 3, self posts, NSFW, Wikipedia in two
    languages, image links, javascript:/file:/ftp: URLs, private and metadata addresses,
    an article URL with tracking parameters and a fragment, a resubmitted article; and
    lines that are not usable records: not JSON, truncated JSON, a JSON array, no url, an
    empty url, an empty line. The outside URLs use reserved or well-known names and are
    never fetched by the tests outside a loopback-only network namespace.
    """
    rng = random.Random(seed)
    subreddits = ("programming", "Python", "learnprogramming", "technology", "compsci")
    start = int(datetime(2017, 1, 1, tzinfo=UTC).timestamp())
    records: list[dict] = []

    def submit(url: str | None, title: str, **fields) -> None:
        post_id = _base36(5_000_000 + len(records) * 7919 + rng.randrange(7919))
        subreddit = fields.pop("subreddit", rng.choice(subreddits))
        record = {
            "id": post_id,
            "url": url,
            "title": title,
            "score": fields.pop("score", int(3 + rng.paretovariate(1.2) * 10)),
            "subreddit": subreddit,
            "created_utc": start + rng.randrange(365 * 24 * 3600),
            "is_self": fields.pop("is_self", False),
            "over_18": fields.pop("over_18", False),
            "author": rng.choice(COMMENTERS),
            "num_comments": rng.randrange(200),
            "domain": urlsplit(url or "").netloc,
            "permalink": f"/r/{subreddit}/comments/{post_id}/{_slug(title)[:40]}/",
        }
        record.update(fields)
        if url is None:
            del record["url"]
        records.append(record)

    for path in web.articles:
        submit(web.url(path), web.article(path).title)
    for case in web.bad_cases:
        submit(web.url(case.path), f"Bad case: {case.name}")
    first = web.article(web.articles[0])
    submit(web.url(first.path), first.title, subreddit="coding")  # a resubmission
    tracked = web.articles[min(3, len(web.articles) - 1)]
    submit(web.url(tracked) + "?utm_source=reddit&utm_medium=social#comments", "Tracked link")
    submit("https://example.com/blog/low-score-post", "Barely noticed", score=2)
    submit("https://example.org/news/downvoted", "Downvoted", score=-4)
    submit(
        "https://www.reddit.com/r/Python/comments/abc123/help/",
        "Help please",
        is_self=True,
        selftext="My code does not work, why?",
    )
    submit("https://example.net/story/nsfw", "Not safe for work", over_18=True)
    submit("https://en.wikipedia.org/wiki/Python_(programming_language)", "Python on Wikipedia")
    submit("https://de.wikipedia.org/wiki/Python_(Programmiersprache)", "Python auf Wikipedia")
    submit("https://i.imgur.com/Xyz123a.jpg", "Look at this")
    submit("https://i.redd.it/abcdef123456.png", "Screenshot")
    submit("https://example.com/funny.gif", "Animated")
    submit("javascript:alert(document.cookie)", "Click me")
    submit("file:///etc/passwd", "Local file")
    submit("ftp://ftp.example.com/pub/readme.txt", "Old school")
    submit(PRIVATE_TARGET, "Router admin page")
    submit(METADATA_TARGET, "Cloud metadata")
    submit("http://localhost:8080/", "My dev server")
    submit(None, "A record without a url")
    submit("", "A record with an empty url")

    records.sort(key=lambda record: record["created_utc"])
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    oddities = (
        "this line is not JSON {",
        '{"id": "trunc1", "url": "http://example.com/trunc',
        "[1, 2, 3]",
        "",
    )
    for offset, oddity in enumerate(oddities):
        lines.insert((offset + 1) * len(lines) // (len(oddities) + 1), oddity)
    return lines


def write_submissions_dump(path: str | Path, web: MiniWeb, seed: int = 0) -> Path:
    """Write `submission_lines(web, seed)` to `path`, compressed by its extension (.gz,
    .zst, else plain), atomically. The same arguments give the same bytes."""
    path = Path(path)
    data = ("\n".join(submission_lines(web, seed)) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        buffer = io.BytesIO()
        # mtime=0 and no file name in the header: the bytes depend on the content only.
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as compressed:
            compressed.write(data)
        data = buffer.getvalue()
    elif path.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdCompressor(level=10).compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)  # readers never see half a file
    return path


# ---------------------------------------------------------------------------------------
# Command line: python -m tasks.corpus.miniweb --port 8000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the gpt2lab mini-web until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--articles", type=int, default=200, help="article pages (200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the articles (0)")
    parser.add_argument("--dump", type=Path, help="also write a submissions dump here")
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # Stop on Ctrl-C and on `kill`, even when started in the background by a shell
        # (which makes such processes ignore SIGINT).
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.default_int_handler)
    # Ctrl-C may come at any moment, even before the wait: catch it around everything.
    try:
        with MiniWeb(args.articles, args.seed, host=args.host, port=args.port) as web:
            print(f"mini-web: {len(web.articles)} articles at {web.base_url}", flush=True)
            if args.dump:
                print(f"submissions dump: {write_submissions_dump(args.dump, web)}", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("mini-web: stopped", flush=True)


if __name__ == "__main__":
    main()
