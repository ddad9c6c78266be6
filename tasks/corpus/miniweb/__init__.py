"""A small local web for demos and tests: realistic article pages plus every bad case.

`MiniWeb` serves, on 127.0.0.1 and a free port, a few hundred article pages that look
like a real news site (cookie banner, navigation, sidebar ads, comments, footer around
the article), so that text extraction has boilerplate to strip. Their text comes from
material that ships with Python, so nothing is downloaded and the pages are the same on
every machine with the same Python. Beside them it serves one page for each way the web
goes wrong (404, a 429 with Retry-After, a server that stalls mid-body, 20 MB of HTML, a
PNG labelled text/html, a redirect loop, latin-1, German, duplicates, ...):
`MiniWeb.bad_cases` lists them with the fetch outcome each should get.
`write_submissions_dump` writes a Reddit-style link dump pointing at it.

    articles.py  the article text, from material that ships with Python
    pages.py     the HTML around it: a news site's boilerplate, and the odd formats
    site.py      what each path answers: the articles' pages and the bad cases (no network)
    server.py    MiniWeb: serves a site over HTTP and counts what it sees
    dump.py      the submissions dump that points at a running MiniWeb
    __main__.py  python -m tasks.corpus.miniweb --port 8000

Requests are counted per path (`hits`), and the in-flight maximum is tracked, so tests
can check politeness from the server's side. It needs only the standard library (and
zstandard to write a .zst dump).
"""

from tasks.corpus.miniweb.articles import FRENCH, GERMAN, Article, build_articles, paragraph_pool
from tasks.corpus.miniweb.dump import submission_lines, write_submissions_dump
from tasks.corpus.miniweb.pages import render_page
from tasks.corpus.miniweb.server import MiniWeb, RequestRecord
from tasks.corpus.miniweb.site import METADATA_TARGET, PRIVATE_TARGET, BadCase

__all__ = [
    "FRENCH",
    "GERMAN",
    "METADATA_TARGET",
    "PRIVATE_TARGET",
    "Article",
    "BadCase",
    "MiniWeb",
    "RequestRecord",
    "build_articles",
    "paragraph_pool",
    "render_page",
    "submission_lines",
    "write_submissions_dump",
]
