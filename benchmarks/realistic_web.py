"""A loopback web of realistic pages for the corpus benchmark: about 25 KB of HTML each,
answered after 100-300 ms, spread over many hosts.

Real article pages are mostly not article: a median news page of about 25 KB carries a few
KB of text inside navigation menus with a hundred links, inline CSS and scripts, JSON-LD
metadata, related-story boxes, comments and a footer of links. The mini-web's pages
(tasks/corpus/miniweb) are about 5 KB. These have a real page's size and kinds of markup
(about 850 elements). trafilatura still finds their article easily: about 4 ms a page on
this machine, where real pages of this size take it about 100 ms (the figure behind the
extractor's time limit), so the benchmark's extraction ceiling is a high one.

Each host is its own loopback address (127.0.0.2, 127.0.0.3, ...; all of 127/8 is
loopback on Linux) with its own port, so the fetcher's per-host politeness applies as on
the real web. Each answer waits a delay drawn once per page from a seeded generator, like
the server time and round trip of a real site. Only the standard library: this runs in a
process of its own (`python -m benchmarks.realistic_web`), which must not import the
flow's heavy modules.
"""

from __future__ import annotations

import html
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tasks.corpus.miniweb.articles import Article, build_articles

LATENCY_S = (0.1, 0.3)  # each page's answer waits a delay drawn from this range
ROBOTS_TXT = b"User-agent: *\nAllow: /\n"
SECTIONS = ("News", "World", "Business", "Technology", "Science", "Health", "Sport", "Culture")
SUBSECTIONS = (
    "Latest", "Analysis", "Opinion", "Video", "Podcasts", "Newsletters", "Local", "Data",
    "Explainers", "Interviews",
)  # fmt: skip
RESULT_LINE = "REALISTIC-WEB "  # marks the lines the server process prints for its parent


# A small inline SVG icon, as menus carry beside their links: little text, many elements.
ICON = '<svg class="i" viewBox="0 0 8 8"><path d="M0 0h4v4H0z"/><path d="M4 4h4v4H4z"/></svg>'


def _links(prefix: str, names: list[str], icon: str = "") -> str:
    return "".join(
        f'<li><a href="/{prefix}/{n.lower()}">{icon}<span>{html.escape(n)}</span></a></li>'
        for n in names
    )


def _style(rng: random.Random) -> str:
    """Inline CSS, as sites inline their critical styles (about 1.5 KB)."""
    rules = []
    for i in range(30):
        rules.append(
            f".c{i}-{rng.randrange(10**6):06d}{{margin:{rng.randrange(24)}px;"
            f"padding:{rng.randrange(16)}px;color:#{rng.randrange(16**6):06x}}}"
        )
    return "<style>" + "\n".join(rules) + "</style>"


def _scripts(article: Article, rng: random.Random) -> str:
    """JSON-LD metadata and an analytics snippet (about 2 KB)."""
    ld = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.title,
        "author": {"@type": "Person", "name": article.author},
        "datePublished": article.published,
        "keywords": [rng.choice(SUBSECTIONS) for _ in range(12)],
    }
    tracker = ";".join(f"t.push(['e{i}',{rng.randrange(10**9)}])" for i in range(40))
    return (
        f'<script type="application/ld+json">{json.dumps(ld)}</script>\n'
        f"<script>(function(){{var t=window.tq=window.tq||[];{tracker}}})();</script>"
    )


def render(article: Article, more: Article, related: list[Article], rng: random.Random) -> str:
    """One page: `article` (its paragraphs and those of `more`, for a long read) inside a
    news site's boilerplate."""
    e = html.escape
    paragraphs = [*article.paragraphs, *more.paragraphs]
    body = []
    for i, paragraph in enumerate(paragraphs):
        # Layout wrappers around each paragraph, as page builders and grid systems emit.
        body.append(f'<div class="row"><div class="col"><p>{e(paragraph)}</p></div></div>')
        if i == 2:  # an inline "read more" box, as news pages put in the text
            picks = rng.sample(related, 3)
            body.append(
                '<aside class="read-more"><h4>Read more</h4><ul>'
                + "".join(f'<li><a href="{r.path}">{e(r.title)}</a></li>' for r in picks)
                + "</ul></aside>"
            )
    menu = "".join(
        f'<li class="menu"><a href="/{s.lower()}">{s}</a><ul>'
        f"{_links(s.lower(), list(SUBSECTIONS), ICON)}</ul></li>"
        for s in SECTIONS
    )
    popular = "".join(
        f'<li><a href="{r.path}"><img src="/img/{i}.jpg" alt="">{e(r.title)}</a>'
        f'<span class="meta">{e(r.author)}, {r.published}</span></li>'
        for i, r in enumerate(related)
    )
    comments = "".join(
        f'<div class="comment" id="c{i}"><a class="user" href="/u/{rng.randrange(10**5)}">'
        f"reader{rng.randrange(10**4)}</a> <time>{rng.randrange(1, 59)} minutes ago</time>"
        f"<p>{e(rng.choice(related).title)}? Interesting point, thanks for writing.</p>"
        f'<a class="reply" href="#reply-{i}">Reply</a> <span class="likes">'
        f"{rng.randrange(200)} likes</span></div>"
        for i in range(rng.randint(4, 10))
    )
    footer = "".join(
        f'<div class="col"><h5>{s}</h5><ul>{_links(s.lower(), list(SUBSECTIONS[:6]))}</ul></div>'
        for s in SECTIONS
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(article.title)} | The Loopback Post</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta property="og:title" content="{e(article.title)}"><meta property="og:type" content="article">
<meta name="author" content="{e(article.author)}"><meta name="twitter:card" content="summary">
<link rel="stylesheet" href="/static/main.css"><link rel="preload" href="/static/font.woff2">
{_style(rng)}
{_scripts(article, rng)}
</head><body>
<div class="cookie">We and our 214 partners use cookies. <button>Accept</button>
<button>Manage</button> <a href="/privacy">Privacy</a></div>
<header><a class="logo" href="/">The Loopback Post</a>
<nav class="mega-menu"><ul>{menu}</ul></nav>
<form action="/search"><input name="q" placeholder="Search"></form></header>
<main><article>
<h1>{e(article.title)}</h1>
<p class="byline">By <a href="/author/{rng.randrange(999)}">{e(article.author)}</a>
<time datetime="{article.published}">{article.published}</time></p>
<div class="article-body">
{chr(10).join(body)}
</div>
<div class="tags">{_links("tag", list(rng.sample(SUBSECTIONS, 5)))}</div>
</article>
<aside class="sidebar"><h3>Most read</h3><ol>{popular}</ol>
<div class="ad">Advertisement<a href="/ads/{rng.randrange(10**6)}">Sponsored content</a></div>
</aside>
<section class="comments"><h2>Comments</h2>{comments}</section></main>
<footer>{footer}<p>&copy; 2019 The Loopback Post</p></footer>
<script src="/static/app.js" async></script>
</body></html>
"""


def build_pages(count: int, seed: int = 0) -> list[tuple[str, bytes, float]]:
    """(path, HTML bytes, delay in seconds) for `count` pages, the same for the same seed."""
    rng = random.Random(seed)
    articles = build_articles(2 * count, seed)
    pages = []
    for i in range(count):
        related = rng.sample(articles, 10)
        page = render(articles[2 * i], articles[2 * i + 1], related, rng)
        pages.append((f"/a/{i:05d}.html", page.encode(), rng.uniform(*LATENCY_S)))
    return pages


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms stall
    timeout = 30

    def do_GET(self) -> None:
        web: RealisticWeb = self.server.web  # type: ignore[attr-defined]
        web.arrived()
        path = urlsplit(self.path).path
        page = web.pages.get(path)
        if path == "/robots.txt":
            body, delay, status = ROBOTS_TXT, LATENCY_S[0], 200
        elif page is None:
            body, delay, status = b"not found", 0.0, 404
        else:
            (body, delay), status = page, 200
        time.sleep(delay)  # the site's server time and the network's round trip
        self.send_response(status)
        kind = "text/plain" if path == "/robots.txt" or status != 200 else "text/html"
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


class RealisticWeb:
    """`hosts` servers on 127.0.0.2, 127.0.0.3, ..., each serving every page."""

    def __init__(self, pages: list[tuple[str, bytes, float]], hosts: int) -> None:
        self.pages = {path: (body, delay) for path, body, delay in pages}
        self.servers = []
        for i in range(hosts):
            server = ThreadingHTTPServer((f"127.0.0.{i + 2}", 0), _Handler)
            server.daemon_threads = True
            server.web = self  # type: ignore[attr-defined]
            self.servers.append(server)
            threading.Thread(target=server.serve_forever, daemon=True).start()
        # Every host serves every page: the benchmark decides which host each link names.
        self.origins = [f"http://{s.server_address[0]}:{s.server_address[1]}" for s in self.servers]
        self.paths = [path for path, _, _ in pages]
        self._lock = threading.Lock()
        self.requests, self.first, self.last = 0, 0.0, 0.0

    def arrived(self) -> None:
        with self._lock:
            now = time.time()
            self.requests += 1
            self.first = self.first or now
            self.last = now

    def window(self) -> dict:
        """Requests since the last call, and the wall-clock times of the first and last."""
        with self._lock:
            seen = {"requests": self.requests, "first": self.first, "last": self.last}
            self.requests, self.first, self.last = 0, 0.0, 0.0
        return seen


def serve(count: int, hosts: int, seed: int) -> int:
    """Serve `count` pages on `hosts` loopback hosts until stdin closes. Prints one line with
    the hosts' origins and the pages' paths; then answers each line "window" on stdin with
    `window()`."""
    web = RealisticWeb(build_pages(count, seed), hosts)
    print(RESULT_LINE + json.dumps({"origins": web.origins, "paths": web.paths}), flush=True)
    for line in sys.stdin:
        if line.strip() == "window":
            print(RESULT_LINE + json.dumps(web.window()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
