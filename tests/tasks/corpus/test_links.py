"""Link intake: URL normalisation, every link rule, bad lines, compressed dumps, URL lists."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pydantic
import pytest
import zstandard

from tasks.corpus.links import (
    LinkDecision,
    LinkInputError,
    LinkRules,
    iter_link_decisions,
    normalize_or_refuse,
    normalize_url,
)
from tasks.corpus.records import Link, Verdict


def submission(url: object = "https://example.com/a", **fields: object) -> dict:
    """A Pushshift-style submission with passing defaults; override what a test checks."""
    record = {
        "id": "abc",
        "subreddit": "science",
        "score": 10,
        "is_self": False,
        "over_18": False,
        "created_utc": 1_500_000_000,
    }
    if url is not None:
        record["url"] = url
    record.update(fields)
    return record


def write_dump(path: Path, lines: list[object]) -> Path:
    """Write JSON-lines (dicts are encoded, strings written as they are), compressed by suffix."""
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        # A 1 GiB window as Pushshift uses (2 GiB there): above zstandard's default limit.
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=30)
        buffer = io.BytesIO()
        compressor = zstandard.ZstdCompressor(compression_params=params)
        with compressor.stream_writer(buffer, closefd=False) as writer:
            writer.write(data)
        data = buffer.getvalue()
    path.write_bytes(data)
    return path


def decide(path: Path, rules: LinkRules | None = None) -> list[LinkDecision]:
    return list(iter_link_decisions([path], rules))


def reasons(decisions: list[LinkDecision]) -> list[str]:
    return ["kept" if d.kept else d.verdict.reason for d in decisions]


# ---------------------------------------------------------------------------------------------
# normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),  # path case is kept
        ("https://example.com", "https://example.com/"),
        ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),  # IDNA
        ("https://BÜCHER.de/x", "https://xn--bcher-kva.de/x"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),  # not http's default
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?utm_source=x&utm_Medium=y", "https://example.com/a"),
        ("https://example.com/a?b=2&fbclid=Z&a=1&gclid=q", "https://example.com/a?b=2&a=1"),
        ("https://example.com/a?z=1&y=2&x=3", "https://example.com/a?z=1&y=2&x=3"),  # order kept
        ("https://example.com/a?q=%20x&ref_src=twsrc", "https://example.com/a?q=%20x"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("  https://example.com./a  ", "https://example.com/a"),  # spaces, trailing dot
        ("https://user:secret@example.com/a", "https://example.com/a"),
        ("http://[2001:DB8::1]:80/", "http://[2001:db8::1]/"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("javascript:alert(1)", "bad_scheme"),
        ("file:///etc/passwd", "bad_scheme"),
        ("ftp://example.com/file", "bad_scheme"),
        ("mailto:someone@example.com", "bad_scheme"),
        ("data:text/html,hello", "bad_scheme"),
        ("example.com/page", "invalid_url"),
        ("https:///no-host", "invalid_url"),
        ("http://example.com:99999/", "invalid_url"),
        ("http://a..b/", "invalid_url"),
        ("http://[::1/", "invalid_url"),
    ],
)
def test_unusable_urls(raw: str, reason: str) -> None:
    assert normalize_url(raw) is None
    verdict = normalize_or_refuse(raw)
    assert isinstance(verdict, Verdict)
    assert (verdict.stage, verdict.reason) == ("links", reason)


def test_custom_tracking_parameters() -> None:
    url = "https://example.com/?utm_source=a&session=1&keep=2"
    assert normalize_url(url, ["session"]) == "https://example.com/?utm_source=a&keep=2"


# ---------------------------------------------------------------------------------------------
# dumps


@pytest.mark.parametrize("name", ["rs.jsonl", "rs.jsonl.gz", "rs.jsonl.zst", "rs.ndjson"])
def test_dump_formats_read_the_same(tmp_path: Path, name: str) -> None:
    path = write_dump(
        tmp_path / name,
        [submission("https://Example.com/a?utm_source=r#top", score=7, id="p1"), submission()],
    )
    first, second = decide(path)
    assert first.source == f"{name}:1"
    assert first.link == Link(
        url="https://example.com/a",
        karma=7,
        subreddit="science",
        post_id="p1",
        created_utc=1_500_000_000,
        source=f"{name}:1",
    )
    assert first.raw_url == "https://Example.com/a?utm_source=r#top"
    assert second.verdict == Verdict("links", "duplicate_url", f"first kept at {name}:1")


def test_every_link_rule(tmp_path: Path) -> None:
    lines = [
        submission("https://ok.example/1"),
        submission("https://ok.example/2", score=2),
        submission("https://ok.example/3", score=3),  # exactly min_score passes
        submission("https://www.reddit.com/r/x/comments/1/", is_self=True),
        submission("https://ok.example/4", over_18=True),
        submission("https://en.wikipedia.org/wiki/GPT-2"),
        submission("https://de.m.wikipedia.org/wiki/Sprachmodell"),
        submission("https://ja.wikipedia.org/wiki/%E8%A8%80%E8%AA%9E"),
        submission("https://wikipedia.org/"),
        submission("https://w.wiki/3x7"),
        submission("https://www.wikiwand.com/en/GPT-2"),
        submission("https://en.wiktionary.org/wiki/corpus"),  # a sister project: kept
        submission("https://m.youtube.com/watch?v=1"),  # subdomain of a blocked domain
        submission("https://notyoutube.com/page"),  # only ends like one: kept
        submission("https://i.imgur.com/a.png"),
        submission("https://ok.example/a.JPG?x=1"),
        submission("https://ok.example/paper.pdf"),
        submission("https://ok.example/code.tar.gz"),
        submission("https://ok.example/page.html"),
        submission("https://ok.example/1#again"),  # duplicate after normalisation
        submission("https://ok.example/no-score", score=None),
    ]
    decisions = decide(write_dump(tmp_path / "rs.jsonl", lines))
    assert reasons(decisions) == [
        "kept",
        "low_score",
        "kept",
        "self_post",
        "over_18",
        *["wikipedia"] * 6,
        "kept",
        "blocked_domain",
        "kept",
        "blocked_domain",
        *["non_html_extension"] * 3,
        "kept",
        "duplicate_url",
        "kept",  # no score: kept unless require_score
    ]
    assert [d.source for d in decisions] == [f"rs.jsonl:{n}" for n in range(1, len(lines) + 1)]
    assert decisions[1].verdict.detail == "karma 2 < 3"
    assert decisions[12].verdict.detail == "youtube.com"
    assert decisions[15].verdict.detail == ".jpg"
    assert decisions[19].verdict.detail == "first kept at rs.jsonl:1"
    assert decisions[20].link is not None and decisions[20].link.karma is None


def test_rules_can_be_relaxed(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path / "rs.jsonl",
        [
            submission("https://en.wikipedia.org/wiki/A", score=1),
            submission("https://self.example/", is_self=True, over_18=True),
            submission("https://youtube.com/x.pdf"),
            submission("https://ok.example/none", score=None),
            submission("https://www.self.example/"),
        ],
    )
    relaxed = LinkRules(
        min_score=0,
        drop_self_posts=False,
        drop_over_18=False,
        drop_wikipedia=False,
        blocked_domains=[],
        dropped_extensions=[],
    )
    assert reasons(decide(path, relaxed)) == ["kept"] * 5
    # Custom lists replace the defaults: youtube.com is no longer blocked, only self.example.
    strict = LinkRules(require_score=True, blocked_domains=["*.Self.Example."])
    assert reasons(decide(path, strict)) == [
        "low_score",
        "self_post",
        "non_html_extension",
        "low_score",
        "blocked_domain",
    ]


def test_bad_dump_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    lines = [
        "{not json",
        "[1, 2]",
        "",  # blank: no decision, but it still counts as a line
        json.dumps({"score": 10}),
        submission(""),
        submission(42),
        submission("javascript:alert(1)"),
        submission("file:///etc/passwd"),
        submission("ftp://example.com/x"),
        submission(score="many"),
        submission("https://ok.example/fine", score="12"),
    ]
    decisions = decide(write_dump(tmp_path / "bad.jsonl", lines))
    got = [(d.source, d.verdict.reason if d.verdict else "kept") for d in decisions]
    assert got == [
        ("bad.jsonl:1", "not_json"),
        ("bad.jsonl:2", "not_json"),
        ("bad.jsonl:4", "no_url"),
        ("bad.jsonl:5", "no_url"),
        ("bad.jsonl:6", "no_url"),
        ("bad.jsonl:7", "bad_scheme"),
        ("bad.jsonl:8", "bad_scheme"),
        ("bad.jsonl:9", "bad_scheme"),
        ("bad.jsonl:10", "invalid_score"),
        ("bad.jsonl:11", "kept"),
    ]
    assert decisions[0].raw_url is None
    assert decisions[5].raw_url == "javascript:alert(1)"
    assert decisions[2].message() == (
        "bad.jsonl:4: dropped (no_url: field 'url' is missing, empty or not a string)"
    )
    assert "'many'" in decisions[8].verdict.detail


def test_reddit_escaped_ampersands_are_unescaped(tmp_path: Path) -> None:
    path = write_dump(tmp_path / "rs.jsonl", [submission("https://ok.example/?a=1&amp;b=2")])
    assert decide(path)[0].link.url == "https://ok.example/?a=1&b=2"


def test_duplicates_across_files_and_formats(tmp_path: Path) -> None:
    first = write_dump(tmp_path / "one.jsonl.gz", [submission("https://ok.example/x")])
    second = tmp_path / "two.txt"
    second.write_text("https://OK.example/x?utm_campaign=c#f 50\nhttps://ok.example/y\n")
    decisions = list(iter_link_decisions([first, second]))
    assert [(d.source, reasons([d])[0]) for d in decisions] == [
        ("one.jsonl.gz:1", "kept"),
        ("two.txt:1", "duplicate_url"),
        ("two.txt:2", "kept"),
    ]
    assert decisions[1].verdict.detail == "first kept at one.jsonl.gz:1"


def test_low_score_copy_does_not_hide_a_later_good_one(tmp_path: Path) -> None:
    path = write_dump(
        tmp_path / "rs.jsonl",
        [submission("https://ok.example/x", score=1), submission("https://ok.example/x")],
    )
    assert reasons(decide(path)) == ["low_score", "kept"]


def test_same_file_name_in_two_folders_uses_full_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = write_dump(tmp_path / "a" / "rs.jsonl", [submission("https://ok.example/1")])
    two = write_dump(tmp_path / "b" / "rs.jsonl", [submission("https://ok.example/2")])
    sources = [d.source for d in iter_link_decisions([one, two])]
    assert sources == [f"{one}:1", f"{two}:1"]


# ---------------------------------------------------------------------------------------------
# URL lists


def test_url_list(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt"
    path.write_text(
        "# hand-picked links\n"
        "\n"
        "https://ok.example/a\n"
        "https://ok.example/b   7\n"
        "https://ok.example/c\t1\n"
        "https://ok.example/d lots\n"
        "https://ok.example/e 1 2\n"
        "javascript:void(0)\n"
        "  https://ok.example/f  \n"
    )
    decisions = decide(path)
    got = [(d.source, reasons([d])[0]) for d in decisions]
    assert got == [
        ("urls.txt:3", "kept"),
        ("urls.txt:4", "kept"),
        ("urls.txt:5", "low_score"),
        ("urls.txt:6", "invalid_score"),
        ("urls.txt:7", "bad_line"),
        ("urls.txt:8", "bad_scheme"),
        ("urls.txt:9", "kept"),
    ]
    assert decisions[0].link.karma is None
    assert decisions[1].link.karma == 7
    strict = decide(path, LinkRules(require_score=True))
    assert reasons(strict)[0] == "low_score"


def test_gzipped_url_list(tmp_path: Path) -> None:
    path = tmp_path / "urls.txt.gz"
    path.write_bytes(gzip.compress(b"https://ok.example/a 5\n"))
    assert decide(path)[0].link == Link("https://ok.example/a", karma=5, source="urls.txt.gz:1")


def test_format_detected_from_content_when_the_name_says_nothing(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "RS_2019-01", ["", submission("https://ok.example/a")])
    listing = tmp_path / "links"
    listing.write_text("# comment\nhttps://ok.example/b 9\n")
    # A compressed file with a wrong name is recognised by its first bytes.
    misnamed = tmp_path / "more.jsonl"
    misnamed.write_bytes(gzip.compress(json.dumps(submission("https://ok.example/c")).encode()))
    decisions = list(iter_link_decisions([dump, listing, misnamed]))
    assert [d.link.url for d in decisions] == [
        "https://ok.example/a",
        "https://ok.example/b",
        "https://ok.example/c",
    ]
    assert decisions[0].source == "RS_2019-01:2"


# ---------------------------------------------------------------------------------------------
# errors


def test_missing_file_fails_at_once_naming_it(tmp_path: Path) -> None:
    good = write_dump(tmp_path / "rs.jsonl", [submission()])
    missing = tmp_path / "nope.jsonl.zst"
    with pytest.raises(FileNotFoundError, match=r"^link input not found: .*nope\.jsonl\.zst$"):
        iter_link_decisions([good, missing])  # before any line is read


def test_truncated_archive_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rs.jsonl.gz"
    lines = [submission(f"https://ok.example/{n}") for n in range(200)]
    data = gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode())
    path.write_bytes(data[: len(data) - 20])
    decisions: list[LinkDecision] = []
    with pytest.raises(LinkInputError, match=r"cannot read .*rs\.jsonl\.gz after line \d+") as err:
        decisions.extend(iter_link_decisions([path]))
    assert "\n" not in str(err.value)
    assert len(decisions) > 0 and all(d.kept for d in decisions)


def test_rules_reject_unknown_fields_and_bad_domains() -> None:
    with pytest.raises(pydantic.ValidationError, match="min_karma"):
        LinkRules(min_karma=3)
    with pytest.raises(pydantic.ValidationError, match="blocked_domains"):
        LinkRules(blocked_domains=["..."])
    rules = LinkRules(
        blocked_domains=["*.Bücher.DE", ".example.org."], dropped_extensions=[".PDF", "Zip"]
    )
    assert rules.blocked_domains == ["xn--bcher-kva.de", "example.org"]
    assert rules.dropped_extensions == ["pdf", "zip"]
