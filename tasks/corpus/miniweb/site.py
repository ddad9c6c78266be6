"""What the mini-web serves: articles made of Python's own prose, the news-site pages around
them, and one page for every way the web goes wrong (the bad cases).

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

import html
import importlib
import inspect
import random
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

SITE_NAME = "The Interpreter Times"
# An address in a private range: following a redirect there must be refused.
PRIVATE_TARGET = "http://10.255.255.1/internal/admin"
METADATA_TARGET = "http://169.254.169.254/latest/meta-data/"

# Standard-library modules whose docstrings are long English prose. Fixed and sorted, so
# that the pages depend only on the Python version and the seed. (Packed by hand: one name
# a line would make this 62 lines of data nobody reads one by one.)
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
    "Ada Whitfield",
    "Ben Okafor",
    "Carmen Ruiz",
    "Dmitri Volkov",
    "Emma Lindqvist",
    "Farah Haddad",
    "Gustavo Pereira",
    "Hana Sato",
    "Ian McAllister",
    "Julia Novak",
)
TITLE_TEMPLATES = (
    "A closer look at {}",
    "Understanding {}",
    "{}, explained",
    "Notes on {}",
    "What every programmer should know about {}",
    "{}: a practical guide",
    "Getting {} right",
    "The surprising details of {}",
)
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


def slug(text: str) -> str:
    """A URL-safe piece of a title: "Notes on X" -> "notes-on-x"."""
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
                path=f"/articles/{index:04d}-{slug(title)}.html",
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
    body = _with_invalid_utf8(page(broken).encode())
    pages[broken.path] = StaticPage("text/html; charset=utf-8", body)
    add("invalid_utf8", broken.path, "ok", "extraction decodes with replacement characters")
    latin = special("/encoding/latin1.html", "A corner café", [ACCENTED[0], *reserved[15:18]])
    latin = replace(latin, paragraphs=tuple(map(_ascii_quotes, latin.paragraphs)))
    body = page(latin, meta_charset=None).encode("latin-1", errors="replace")
    pages[latin.path] = StaticPage("text/html; charset=iso-8859-1", body)
    add("latin1_header", latin.path, "ok", "extraction decodes latin-1 (declared in the header)")
    latin = special("/encoding/latin1-meta.html", "Smörgåsbord", [ACCENTED[1], *reserved[18:21]])
    latin = replace(latin, paragraphs=tuple(map(_ascii_quotes, latin.paragraphs)))
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
    near = _change_a_few_words(articles[1], rng)
    near = replace(near, path="/syndicated/" + articles[1].path.rsplit("/", 1)[1])
    pages[near.path] = _html(page(near))
    add("near_duplicate", near.path, "ok", f"dedup drops it: nearly {articles[1].path}")
