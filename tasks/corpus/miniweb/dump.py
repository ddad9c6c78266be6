"""A Reddit-style submissions dump that points at a running mini-web.

The corpus flow reads Pushshift / Arctic Shift dumps (one JSON object a line); this writes
one whose links are the mini-web's pages and bad cases, plus every kind of line the link
rules must drop or cannot read, so the whole funnel can run offline.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from tasks.corpus.miniweb.articles import slug
from tasks.corpus.miniweb.pages import COMMENTERS
from tasks.corpus.miniweb.server import MiniWeb
from tasks.corpus.miniweb.site import METADATA_TARGET, PRIVATE_TARGET


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
            "permalink": f"/r/{subreddit}/comments/{post_id}/{slug(title)[:40]}/",
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
