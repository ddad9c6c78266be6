"""The mini-web's pages: an article wrapped in a real news site's boilerplate (cookie
banner, navigation, sidebar ads, comments, footer) so that text extraction has something
to strip, plus the odd formats the bad cases need (XHTML, a script-only page, a PNG,
invalid UTF-8)."""

from __future__ import annotations

import html
import random
import struct
import zlib

from tasks.corpus.miniweb.articles import Article

SITE_NAME = "The Interpreter Times"


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


def ascii_quotes(text: str) -> str:
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


def with_invalid_utf8(body: bytes) -> bytes:
    """Insert byte sequences that are not UTF-8 (a lone 0xff, a broken 2-byte sequence,
    an encoded surrogate) between words of the article."""
    for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80"):
        body = body.replace(b" and ", b" and " + bad + b" ", 2)
    return body
