"""Link intake: read Reddit submission dumps or URL lists and decide, link by link, what to fetch.

WebText (the GPT-2 corpus) started from every outbound Reddit link with at least 3 karma: the
karma is a cheap human vote that the page is worth reading. This module applies that rule and
a few more, all configurable through `LinkRules`, and explains every link it drops.

Inputs, recognised by file name (a compression suffix first, then the format):

- compression: `.gz` (gzip) or `.zst`/`.zstd` (Zstandard); also recognised by the file's first
  bytes, so a misnamed file still reads. Files are decompressed as a stream, never whole.
- Reddit submission dumps, as published by Pushshift and Arctic Shift: `.jsonl`, `.ndjson`,
  `.json`: one JSON object per line with `url`, `score`, `is_self`, `over_18`, `subreddit`,
  `id`, `created_utc` (other fields are ignored).
- plain URL lists: `.txt`, `.urls`, `.lst`: one `URL` or `URL KARMA` per line (any whitespace
  between); blank lines and lines starting with `#` are skipped.
- any other name: the first line that is neither blank nor a `#` comment decides: a line
  starting with `{` means a dump, anything else a URL list.

Every input line becomes one `LinkDecision`: a `Link` to fetch, or a `Verdict(stage="links")`
saying why not. Bad lines (not JSON, no URL, a `javascript:` URL, ...) are decisions too, with
their `file:line`, so a bad line never stops a run and is always explained.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import json
import logging
import posixpath
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

import zstandard
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.corpus.fetch import HOST_NAME, url_refusal
from tasks.corpus.records import Link, Verdict

log = logging.getLogger(__name__)

STAGE = "links"

# Only the first few bad lines are logged one by one; a dump with millions of broken lines
# must not flood the terminal. Every bad line is still a decision with its own verdict.
_MAX_LOGGED_BAD_LINES = 20
_INPUT_ERRORS = {"not_json", "no_url", "bad_scheme", "invalid_url", "invalid_score", "bad_line"}

# Pushshift dumps use a 2 GiB compression window; the library's default limit is lower.
_ZSTD_MAX_WINDOW = 2**31
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DUMP_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_LIST_SUFFIXES = {".txt", ".urls", ".lst"}
_COMPRESSION_SUFFIXES = {".gz", ".zst", ".zstd"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are when a path is percent-encoded: the URL syntax characters and
# "%" itself, so a path that is already encoded is not encoded twice.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
# Longer URLs are refused: no real page needs one, most servers answer 414 past 8 KiB, and a
# dump line holding a megabyte "URL" is garbage, not a link. (Browsers allow more.)
MAX_URL_CHARS = 8192
# DNS limits: 253 characters for a whole name (RFC 1035), 63 for one label.
_MAX_HOST_CHARS = 253
# Karma and times are stored as SQLite integers (64-bit signed).
_INT64 = 2**63

DEFAULT_BLOCKED_DOMAINS = [
    # Reddit itself: WebText wants pages Reddit points *to*, not Reddit's own threads.
    "reddit.com",
    "redd.it",
    # Image, GIF and video hosts: their pages are a player or a picture, with no prose.
    "imgur.com",
    "gfycat.com",
    "giphy.com",
    "youtube.com",
    "youtu.be",
    "vimeo.com",
    "streamable.com",
    "twitch.tv",
    # Social sites: a few words per page, and most pages need a login or JavaScript.
    "twitter.com",
    "x.com",
    "facebook.com",
    "instagram.com",
    # Audio streaming: players, not text.
    "soundcloud.com",
    "spotify.com",
]

DEFAULT_DROPPED_EXTENSIONS = [
    # images
    *["jpg", "jpeg", "png", "gif", "gifv", "bmp", "tif", "tiff", "webp", "svg", "ico", "heic"],
    # video
    *["mp4", "m4v", "webm", "mov", "avi", "mkv", "flv", "wmv", "mpg", "mpeg"],
    # audio
    *["mp3", "m4a", "wav", "ogg", "oga", "flac", "aac", "opus"],
    # documents that are not HTML
    *["pdf", "epub", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf"],
    # archives (a ".tar.gz" ends in "gz")
    *["zip", "gz", "tgz", "bz2", "xz", "7z", "rar", "tar", "zst"],
    # programs and disk images
    *["exe", "msi", "dmg", "apk", "iso", "bin", "deb", "rpm", "jar"],
]

# Query parameters that only say where a click came from. They make the same page look like
# many different URLs, which defeats de-duplication. "utm_*" means every name starting "utm_".
DEFAULT_TRACKING_PARAMETERS = [
    "utm_*",  # Google Analytics campaign tags: utm_source, utm_medium, utm_campaign, ...
    "fbclid",  # Facebook click id
    "gclid",  # Google Ads click ids
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",  # Microsoft Ads
    "yclid",  # Yandex
    "igshid",  # Instagram share id
    "mc_cid",  # Mailchimp
    "mc_eid",
    "_hsenc",  # HubSpot
    "_hsmi",
    "mkt_tok",  # Marketo
    "ref_src",  # Twitter
    "_ga",  # Google Analytics cross-domain linker
    "_gl",
]

# Wikipedia in every language: "en.wikipedia.org", the mobile "en.m.wikipedia.org", and the
# bare "wikipedia.org" portal are all subdomains of (or equal to) "wikipedia.org". Also dropped:
# "wikipedia.com" (redirects to wikipedia.org), "w.wiki" (Wikimedia's official short links,
# almost always to Wikipedia), and "wikiwand.com" (a reader that shows Wikipedia's articles
# with the same text). Sister projects (wiktionary, wikibooks, wikimedia commons) are kept:
# the GPT-2 paper removed Wikipedia because its text overlaps common test sets, not them.
DEFAULT_WIKIPEDIA_DOMAINS = ["wikipedia.org", "wikipedia.com", "w.wiki", "wikiwand.com"]


class LinkInputError(ValueError):
    """An input file cannot be read (corrupt compression, unreadable file): a one-line message
    naming the file, and the line where reading stopped."""


class LinkRules(BaseModel):
    """Which links to keep. Defaults follow WebText (GPT-2 paper, section 2.1).

    Domain lists match a domain and all its subdomains: "youtube.com" also blocks
    "m.youtube.com" and "www.youtube.com", but not "notyoutube.com".
    """

    # extra="forbid": a misspelt field in a preset fails at start, naming the field.
    model_config = ConfigDict(extra="forbid")

    min_score: int = Field(
        default=3,
        description="Keep links whose submission has at least this karma. WebText used 3: a "
        "cheap sign that other people found the page worth reading.",
    )
    require_score: bool = Field(
        default=False,
        description="What to do with a link that has no karma at all (a URL-list line without "
        "a number, a dump line without `score`). False: keep it, because a plain URL list is "
        "usually hand-picked and has no karma to give. True: drop it as `low_score`.",
    )
    drop_self_posts: bool = Field(
        default=True,
        description="Drop text posts (`is_self`): they link back to Reddit, not to a page.",
    )
    drop_over_18: bool = Field(
        default=True,
        description="Drop submissions marked NSFW (`over_18`).",
    )
    drop_wikipedia: bool = Field(
        default=True,
        description="Drop Wikipedia in every language (see `wikipedia_domains`). GPT-2 removed "
        "it because many test sets are built from Wikipedia, and overlap would inflate scores.",
    )
    wikipedia_domains: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WIKIPEDIA_DOMAINS),
        description="The domains (with their subdomains) that count as Wikipedia.",
    )
    blocked_domains: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_DOMAINS),
        description="Domains never fetched, subdomains included: Reddit itself, and media or "
        "social sites whose pages hold little text to extract.",
    )
    dropped_extensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DROPPED_EXTENSIONS),
        description="File extensions (of the URL path, any case, query ignored) that point to "
        "files which are not web pages: images, video, audio, PDF, office, archives, programs. "
        "Dropping them before fetching saves the download.",
    )
    tracking_parameters: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRACKING_PARAMETERS),
        description="Query parameters removed when normalising a URL (any case); a trailing "
        "`*` matches a prefix. They only record where a click came from, and would make one "
        "page look like many URLs.",
    )

    @field_validator("blocked_domains", "wikipedia_domains")
    @classmethod
    def _clean_domains(cls, domains: list[str]) -> list[str]:
        # "*.Example.com", ".example.com" and "example.com." all mean "example.com".
        cleaned = []
        for domain in domains:
            host = domain.strip().lstrip("*").strip(".")
            ascii_host = _ascii_host(host)
            if not host or ascii_host is None:
                raise ValueError(f"not a domain name: {domain!r}")
            cleaned.append(ascii_host)
        return cleaned

    @field_validator("dropped_extensions", "tracking_parameters")
    @classmethod
    def _lower(cls, names: list[str]) -> list[str]:
        return [name.strip().lstrip(".").lower() for name in names if name.strip()]


@dataclass(frozen=True)
class LinkDecision:
    """What the link rules made of one input line.

    Exactly one of `link` (kept: fetch it) and `verdict` (dropped, stage "links") is set.
    """

    source: str  # "file_name:line_number", line numbers from 1
    raw_url: str | None  # the URL as written in the input; None when the line has none
    url: str | None = None  # the normalised URL, when the raw one could be normalised
    link: Link | None = None
    verdict: Verdict | None = None

    @property
    def kept(self) -> bool:
        return self.link is not None

    def message(self) -> str:
        """One line for humans, e.g. `dump.jsonl:7: dropped (not_json: Expecting value)`."""
        if self.link is not None:
            return f"{self.source}: kept {self.link.url}"
        assert self.verdict is not None
        detail = f": {self.verdict.detail}" if self.verdict.detail else ""
        return f"{self.source}: dropped ({self.verdict.reason}{detail})"


# --------------------------------------------------------------------------------------------
# URL normalisation
# --------------------------------------------------------------------------------------------


def normalize_url(
    url: str, tracking_parameters: Sequence[str] = tuple(DEFAULT_TRACKING_PARAMETERS)
) -> str | None:
    """The canonical form of an http(s) URL, or None when it is not a usable http(s) URL.

    Canonical means: scheme and host in lower case, the host in ASCII (IDNA, so "bücher.de"
    becomes "xn--bcher-kva.de"), no default port (":80" for http, ":443" for https), no
    user name or password, no `#fragment`, no tracking parameters; the other query parameters
    are kept, in their order and with their encoding. Two URLs that name the same page this way
    become the same string, so they are fetched once. `normalize_or_refuse` says *why* a URL
    was refused.
    """
    result = normalize_or_refuse(url, tracking_parameters)
    return result if isinstance(result, str) else None


def normalize_or_refuse(
    url: str, tracking_parameters: Sequence[str] = tuple(DEFAULT_TRACKING_PARAMETERS)
) -> str | Verdict:
    """The canonical URL (as `normalize_url`), or a Verdict saying why the link is refused
    (`bad_scheme` or `invalid_url`): the link rules record that reason in the manifest."""
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        return Verdict(STAGE, "invalid_url", f"longer than {MAX_URL_CHARS} characters")
    if not _is_unicode(url):  # a lone surrogate ("\\ud800" in a JSON dump): not text at all
        return Verdict(STAGE, "invalid_url", "not valid Unicode (a lone surrogate)")
    try:
        parts = urlsplit(url)
    except ValueError as error:  # e.g. an unbalanced "[" in the host
        return Verdict(STAGE, "invalid_url", str(error))
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        # javascript:, file:, ftp:, mailto:, data:, ... are never fetched. A URL with no scheme
        # at all ("example.com/page") is refused too: guessing http:// could fetch the wrong site.
        if not scheme:
            return Verdict(STAGE, "invalid_url", "no scheme: expected http:// or https://")
        return Verdict(STAGE, "bad_scheme", f"{scheme}: is not http or https")
    host = _normal_host(parts.hostname, bracketed="[" in parts.netloc.rpartition("@")[2])
    if isinstance(host, Verdict):
        return host
    try:
        port = parts.port
    except ValueError:
        return Verdict(STAGE, "invalid_url", "invalid port")
    netloc = f"[{host}]" if ":" in host else host  # IPv6 addresses keep their brackets
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    # Spaces and non-ASCII characters are percent-encoded, as a browser would send them.
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = quote(_strip_tracking(parts.query, tracking_parameters), safe=_QUERY_SAFE)
    normal = urlunsplit((scheme, netloc, path, query, ""))
    # The last word is the fetcher's: a URL kept here must be one it can request as written
    # (a port of 0, say), so that each link's fate is decided here and not by surprise later.
    if (refusal := url_refusal(normal)) is not None:
        return Verdict(STAGE, "invalid_url", refusal.detail)
    return normal


def _normal_host(hostname: str | None, bracketed: bool) -> str | Verdict:
    """Lower-case ASCII host without a trailing dot (an IPv6 address in its shortest form),
    or a Verdict saying why there is none usable."""
    if not hostname:
        return Verdict(STAGE, "invalid_url", "missing host name")
    if bracketed:  # "[...]" holds an IP address, nothing else
        if "%" in hostname:
            return Verdict(STAGE, "invalid_url", "an IPv6 zone (%...) only means something locally")
        try:
            address = ipaddress.IPv6Address(hostname)
        except ValueError:
            return Verdict(STAGE, "invalid_url", f"[{hostname}] is not an IPv6 address")
        # One spelling per address ("[0:0::1]" and "[::1]" are the same page).
        return address.compressed
    host = _ascii_host(hostname.rstrip("."))
    if host is None or not HOST_NAME.match(host):
        return Verdict(STAGE, "invalid_url", f"{hostname[:100]!r} is not a host name")
    return host


def _is_unicode(text: str) -> bool:
    """False when `text` holds a lone surrogate, which cannot be encoded (or stored) as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ascii_host(host: str) -> str | None:
    """A host name in lower-case ASCII, IDNA-encoding the labels that need it; None if invalid."""
    if not host:
        return None
    try:
        labels = [
            label.lower() if label.isascii() else label.encode("idna").decode("ascii").lower()
            for label in host.split(".")
        ]
    except UnicodeError:  # a label too long, empty, or not encodable
        return None
    if any(not label or len(label) > 63 for label in labels):
        return None
    ascii_host = ".".join(labels)
    return ascii_host if len(ascii_host) <= _MAX_HOST_CHARS else None


def _strip_tracking(query: str, tracking_parameters: Sequence[str]) -> str:
    """The query without tracking parameters; the others keep their order and exact bytes."""
    exact = {name.lower() for name in tracking_parameters if not name.endswith("*")}
    prefixes = tuple(name[:-1].lower() for name in tracking_parameters if name.endswith("*"))
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue  # "a=1&&b=2" and a trailing "&" carry nothing
        name = unquote_plus(pair.split("=", 1)[0]).lower()
        if name in exact or (prefixes and name.startswith(prefixes)):
            continue
        kept.append(pair)
    return "&".join(kept)


# --------------------------------------------------------------------------------------------
# The rules applied to one candidate link
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """The fields of one input line that the rules look at."""

    raw_url: str
    karma: int | None = None
    subreddit: str | None = None
    post_id: str | None = None
    created_utc: int | None = None
    is_self: bool = False
    over_18: bool = False


class _Rules:
    """LinkRules prepared for fast checks (sets and tuples, built once per run)."""

    def __init__(self, rules: LinkRules) -> None:
        self.rules = rules
        self.tracking = tuple(rules.tracking_parameters)
        self.wikipedia = tuple(rules.wikipedia_domains)
        self.blocked = tuple(rules.blocked_domains)
        self.extensions = frozenset(rules.dropped_extensions)

    def policy_verdict(self, candidate: _Candidate, url: str) -> Verdict | None:
        """Why the rules drop this (well-formed) link, or None to keep it."""
        rules = self.rules
        if rules.drop_self_posts and candidate.is_self:
            return Verdict(STAGE, "self_post")
        if rules.drop_over_18 and candidate.over_18:
            return Verdict(STAGE, "over_18")
        if candidate.karma is None:
            if rules.require_score:
                return Verdict(STAGE, "low_score", "no karma given and require_score is set")
        elif candidate.karma < rules.min_score:
            return Verdict(STAGE, "low_score", f"karma {candidate.karma} < {rules.min_score}")
        host = urlsplit(url).hostname or ""
        if rules.drop_wikipedia and (match := _domain_match(host, self.wikipedia)):
            return Verdict(STAGE, "wikipedia", match)
        if match := _domain_match(host, self.blocked):
            return Verdict(STAGE, "blocked_domain", match)
        extension = _extension(url)
        if extension in self.extensions:
            return Verdict(STAGE, "non_html_extension", f".{extension}")
        return None


def _domain_match(host: str, domains: Sequence[str]) -> str | None:
    """The entry of `domains` that `host` equals or is a subdomain of, else None."""
    for domain in domains:
        if host == domain or host.endswith("." + domain):
            return domain
    return None


def _extension(url: str) -> str:
    """Lower-case extension of the URL path's last segment ("" if none); the query is ignored."""
    last = posixpath.basename(urlsplit(url).path)
    _, dot, extension = unquote_plus(last).rpartition(".")
    return extension.lower() if dot else ""


# --------------------------------------------------------------------------------------------
# Reading input files
# --------------------------------------------------------------------------------------------


def iter_link_decisions(
    paths: Sequence[Path | str], rules: LinkRules | None = None
) -> Iterator[LinkDecision]:
    """One LinkDecision per input line (blank and `#` lines of URL lists excepted), in order.

    Files are read in the order given. A URL seen again after normalisation, in the same file
    or a later one, is dropped as `duplicate_url`; only links that passed every other rule count
    as "seen", so a low-karma copy does not hide a later high-karma one.

    Raises FileNotFoundError (one line, naming the file) before anything is read when an
    input is missing, and LinkInputError when a file turns out corrupt halfway.
    """
    rules = rules or LinkRules()
    paths = [Path(path) for path in paths]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"link input not found: {path}")
    return _decide_all(paths, _Rules(rules))


def _decide_all(paths: list[Path], rules: _Rules) -> Iterator[LinkDecision]:
    names = _display_names(paths)
    seen: dict[bytes, str] = {}  # URL digest -> where it was first kept
    logged = 0
    for path, name in zip(paths, names, strict=True):
        for line_number, candidate in _read_candidates(path):
            source = f"{name}:{line_number}"
            decision = _decide(source, candidate, rules, seen)
            if decision.verdict is not None and decision.verdict.reason in _INPUT_ERRORS:
                logged += 1
                if logged <= _MAX_LOGGED_BAD_LINES:
                    log.warning("skipping bad input line %s", decision.message())
                elif logged == _MAX_LOGGED_BAD_LINES + 1:
                    log.warning("more bad input lines: see the manifest for all of them")
            yield decision


def _display_names(paths: list[Path]) -> list[str]:
    """File names for `source`; the full paths only where two inputs share a name.

    The bare name keeps sources short and lets a run resume after its inputs moved folders.
    """
    names = [path.name for path in paths]
    if len(set(names)) == len(names):
        return names
    return [str(path) for path in paths]


def _decide(
    source: str, candidate: _Candidate | Verdict, rules: _Rules, seen: dict[bytes, str]
) -> LinkDecision:
    if isinstance(candidate, Verdict):  # the line itself was unreadable
        return LinkDecision(source, None, verdict=candidate)
    checked = normalize_or_refuse(candidate.raw_url, rules.tracking)
    if isinstance(checked, Verdict):
        return LinkDecision(source, candidate.raw_url, verdict=checked)
    url = checked
    verdict = rules.policy_verdict(candidate, url)
    if verdict is None:
        # A 16-byte digest instead of the URL keeps the memory per seen link small (tens of
        # millions of links); a clash would need about 2**64 links.
        key = hashlib.blake2b(url.encode("utf-8"), digest_size=16).digest()
        first = seen.setdefault(key, source)
        if first != source:
            verdict = Verdict(STAGE, "duplicate_url", f"first kept at {first}")
    if verdict is not None:
        return LinkDecision(source, candidate.raw_url, url=url, verdict=verdict)
    link = Link(
        url=url,
        karma=candidate.karma,
        subreddit=candidate.subreddit,
        post_id=candidate.post_id,
        created_utc=candidate.created_utc,
        source=source,
    )
    return LinkDecision(source, candidate.raw_url, url=url, link=link)


def _read_candidates(path: Path) -> Iterator[tuple[int, _Candidate | Verdict]]:
    """(line number, candidate or input-error verdict) for each meaningful line of one file."""
    is_dump = _is_dump(path)
    line_number = 0
    try:
        with _open_lines(path) as lines:
            for line_number, raw in enumerate(lines, start=1):
                parsed = _parse_dump_line(raw) if is_dump else _parse_list_line(raw)
                if parsed is not None:
                    yield line_number, parsed
    except (OSError, EOFError, zstandard.ZstdError) as error:
        # Truncated or corrupt compression: everything before this point was already yielded.
        where = f"after line {line_number}" if line_number else "at the start"
        raise LinkInputError(f"cannot read {path} {where}: {error}") from None


@contextmanager
def _open_lines(path: Path) -> Iterator[IO[bytes]]:
    """A buffered binary stream of the file's decompressed bytes (gzip/zstd by magic bytes)."""
    with ExitStack() as stack:
        raw = stack.enter_context(path.open("rb"))
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(_GZIP_MAGIC):
            yield stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif magic.startswith(_ZSTD_MAGIC):
            decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
            reader = stack.enter_context(decompressor.stream_reader(raw, closefd=False))
            # The buffer gives readline() and line iteration over the decompressed stream.
            yield stack.enter_context(io.BufferedReader(reader, buffer_size=1 << 20))
        else:
            yield raw


def _is_dump(path: Path) -> bool:
    """True for a JSON-lines dump, False for a URL list: by suffix, else by the first line."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    if suffixes and suffixes[-1] in _DUMP_SUFFIXES:
        return True
    if suffixes and suffixes[-1] in _LIST_SUFFIXES:
        return False
    try:
        with _open_lines(path) as lines:
            for raw in lines:
                line = raw.strip()
                if line and not line.startswith(b"#"):
                    return line.startswith(b"{")
    except (OSError, EOFError, zstandard.ZstdError) as error:
        raise LinkInputError(f"cannot read {path} at the start: {error}") from None
    return False


def _parse_dump_line(raw: bytes) -> _Candidate | Verdict | None:
    """One Pushshift / Arctic Shift submission; None for a blank line."""
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Verdict(STAGE, "not_json", _first_line(str(error)))
    if not isinstance(record, dict):
        return Verdict(STAGE, "not_json", f"expected a JSON object, got {type(record).__name__}")
    url = record.get("url")
    if not isinstance(url, str) or not url.strip():
        return Verdict(STAGE, "no_url", "field 'url' is missing, empty or not a string")
    if not _is_unicode(url):  # it could not even be stored: say what it was, escaped
        escaped = url.encode("utf-8", "backslashreplace").decode("utf-8")[:200]
        return Verdict(STAGE, "invalid_url", f"not valid Unicode (a lone surrogate): {escaped}")
    try:
        karma = _parse_int(record.get("score"))
    except ValueError:
        score = record.get("score")
        return Verdict(STAGE, "invalid_score", f"field 'score' is not an integer: {score!r}")
    return _Candidate(
        # Reddit's API HTML-escapes "&" in URLs ("?a=1&amp;b=2"), and the dumps kept that.
        raw_url=url.replace("&amp;", "&"),
        karma=karma,
        subreddit=_optional_str(record.get("subreddit")),
        post_id=_optional_str(record.get("id")),
        created_utc=_optional_time(record.get("created_utc")),
        is_self=record.get("is_self") is True,
        over_18=record.get("over_18") is True,
    )


def _parse_list_line(raw: bytes) -> _Candidate | Verdict | None:
    """One `URL` or `URL KARMA` line; None for blank lines and `#` comments."""
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        return Verdict(STAGE, "bad_line", f"not UTF-8: {error}")
    if not line or line.startswith("#"):
        return None
    fields = line.split()
    if len(fields) > 2:
        return Verdict(STAGE, "bad_line", "expected 'URL' or 'URL KARMA'")
    try:
        karma = _parse_int(fields[1]) if len(fields) == 2 else None
    except ValueError:
        return Verdict(STAGE, "invalid_score", f"karma is not an integer: {fields[1]!r}")
    return _Candidate(raw_url=fields[0], karma=karma)


def _parse_int(value: Any) -> int | None:
    """An int from an int, an integral float or a numeric string; None when absent.

    Raises ValueError for anything else (booleans, "12.5", "many"), so a broken karma is
    reported rather than guessed.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        number = value
    else:
        as_float = float(value) if isinstance(value, str | float) else float("nan")
        if not as_float.is_integer():  # also nan and inf
            raise ValueError(value)
        number = int(as_float)
    if not -_INT64 <= number < _INT64:  # the store keeps 64-bit integers
        raise ValueError(value)
    return number


def _optional_time(value: Any) -> int | None:
    """Seconds since 1970 (dumps write ints, floats or strings); None when absent or odd.

    The time is only carried along for the record, so an odd value is not worth dropping for.
    """
    try:
        return _parse_int(value)
    except (ValueError, OverflowError):
        return None


def _optional_str(value: Any) -> str | None:
    """The string, or None when absent, empty or not storable (a lone surrogate)."""
    return value if isinstance(value, str) and value and _is_unicode(value) else None


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text
