"""Polite fetching: links in, pages out; one `Page` per link, and bad input never raises.

A link dump is untrusted input, and every server we visit is someone else's machine, so
the fetcher follows a few rules:

- **Politeness.** At most `per_host_connections` requests to one host at a time, and
  `per_host_delay_s` between the starts of two requests to it; robots.txt is read once per
  host and obeyed, its Crawl-delay included; a 429 or 503 with Retry-After pauses the host.
  Every request says who we are in its User-Agent.
- **Bounded cost.** Timeouts per request, a body cap checked while streaming (a 20 MB page
  is never held in memory), a redirect limit, a retry limit.
- **Safety.** A destination that is (or resolves to) a loopback, private, link-local,
  multicast, reserved or unspecified address is refused before any connection: otherwise a
  link such as http://169.254.169.254/ would make the crawler read cloud credentials or
  poke at the local network. Each redirect hop is checked the same way.

Verdict reasons (stage "fetch"); stable codes the funnel counts:

    invalid_url         not http(s), no host, a bad port, a URL that httpx and urllib do
                        not both parse, or an unusable redirect Location
    private_address     the host is, or resolves to, an address we refuse (see above)
    robots_disallowed   robots.txt forbids this path to our user agent
    robots_unreachable  robots.txt answered 5xx or 429 (after retries): RFC 9309
                        (section 2.3.1.4) says to assume everything is disallowed
    http_<status>       a final status other than 2xx, e.g. http_404 (after retries for
                        429 and 5xx)
    redirect_loop       a redirect points back to a URL already visited on this chain
    too_many_redirects  more than `max_redirects` hops
    not_html            Content-Type is not text/html or application/xhtml+xml
    too_large           the body is over `max_bytes` (declared or counted while streaming)
    binary_content      the first KiB looks binary (NUL bytes, an image/archive signature)
                        although the server said HTML; only with `sniff_binary`
    timeout             connecting or the whole request took too long (after retries;
                        also when robots.txt timed out: the host is then skipped)
    connection_error    the host did not resolve, or connecting or reading failed
                        (after retries; also when robots.txt could not be fetched)
    decoding_error      the Content-Encoding (gzip, ...) could not be decoded
    internal_error      a bug in this module: logged with its traceback; the batch goes on

Known limits: robots.txt is read with `urllib.robotparser`, which applies the first
matching rule (not the longest, as RFC 9309 asks) and reads Crawl-delay only in whole
seconds. Compressed bodies are counted after decompression, so `max_bytes` bounds what we
keep, but one network chunk of a "zip bomb" may briefly expand in memory before the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import ipaddress
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import certifi
import httpx
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator

from tasks.corpus.records import Link, Page, Verdict

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "gpt2lab/0.1 (+corpus research crawler)"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# RFC 9309 asks crawlers to parse at least the first 500 KiB of a robots.txt.
ROBOTS_MAX_BYTES = 512 * 1024
# How much of a body we look at to decide that it is binary, not HTML.
SNIFF_BYTES = 1024
BINARY_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",  # JPEG
    b"%PDF-",
    b"PK\x03\x04",  # zip, docx, epub, ...
    b"\x1f\x8b",  # gzip (a body the server compressed twice, or a .gz file)
    b"RIFF",  # WebP, WAV, AVI
    b"\x7fELF",
)
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Letters, digits, dots, hyphens (underscores appear in the wild): anything else in a host
# name (spaces, percent signs) is not worth a DNS query.
HOST_NAME = re.compile(r"^[a-z0-9_.-]+$")


class FetchSettings(BaseModel):
    """How to fetch: politeness, limits and safety. The defaults suit a real crawl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_agent: str = Field(
        DEFAULT_USER_AGENT,
        min_length=1,
        description="sent with every request, robots.txt included, and matched against "
        "robots.txt groups by its first word ('gpt2lab')",
    )
    max_connections: int = Field(16, ge=1, description="requests in flight, all hosts together")
    per_host_connections: int = Field(2, ge=1, description="requests in flight to one host")
    per_host_delay_s: float = Field(
        1.0, ge=0, description="least time between the starts of two requests to one host"
    )
    max_crawl_delay_s: float = Field(
        60.0,
        ge=0,
        description="a robots.txt Crawl-delay above this is capped to it, so that one host "
        "cannot stall a batch for hours",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="to open a connection")
    total_timeout_s: float = Field(
        30.0,
        gt=0,
        description="for one request from sending to the last body byte; catches servers "
        "that stall mid-body. Waiting for a turn at a busy host does not count",
    )
    max_bytes: int = Field(5_000_000, ge=1, description="larger bodies are dropped: too_large")
    max_redirects: int = Field(5, ge=0, description="redirect hops followed per attempt")
    retries: int = Field(
        3, ge=0, description="extra attempts after a timeout, connection error, 429 or 5xx"
    )
    backoff_base_s: float = Field(0.5, ge=0, description="first retry waits about this long")
    backoff_max_s: float = Field(
        30.0,
        ge=0,
        description="longest wait before a retry; a Retry-After asking for more gives up "
        "instead of retrying early",
    )
    respect_robots: bool = Field(True, description="read and obey robots.txt")
    allow_private_addresses: bool = Field(
        False,
        description="allow loopback/private/link-local destinations (the local mini-web); "
        "never for untrusted link dumps",
    )
    allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        (),
        description="networks allowed even though private, e.g. ['127.0.0.1/32'] for a "
        "local test server; narrower than allow_private_addresses",
    )
    sniff_binary: bool = Field(
        True, description="drop 'HTML' whose first KiB is binary: binary_content"
    )

    @field_validator("user_agent")
    @classmethod
    def _printable_ascii(cls, value: str) -> str:
        # It goes into an HTTP header: a newline would inject headers, non-ASCII is refused.
        if not (value.isascii() and value.isprintable()):
            raise ValueError("must be printable ASCII without newlines (it is an HTTP header)")
        return value

    def decision_policy(self) -> dict[str, Any]:
        """The settings that decide whether a link may be fetched at all (not how fast):
        a run's recorded fates hold only under the same ones."""
        return {
            "respect_robots": self.respect_robots,
            "allow_private_addresses": self.allow_private_addresses,
            "allowed_networks": sorted(str(network) for network in self.allowed_networks),
            "user_agent": self.user_agent,
            "max_bytes": self.max_bytes,
        }


# ---------------------------------------------------------------------------------------
# Public entry points


async def fetch_pages(
    links: Sequence[Link],
    settings: FetchSettings,
    on_page: Callable[[Page], None] | None = None,
    robots_cache: RobotsCache | None = None,
) -> list[Page]:
    """Fetch every link; return one `Page` per link, in input order.

    A link that appears twice is fetched once and both positions get the same `Page`.
    `on_page` is called once per distinct URL as soon as its page is complete, so that the
    caller can record it durably; an exception raised by `on_page` stops the batch and
    propagates (losing records silently would be worse).
    """
    urls = list(dict.fromkeys(link.url for link in links))  # distinct, in order
    async with _client(settings) as client:
        fetcher = _Fetcher(settings, client, robots_cache)
        tasks = {url: asyncio.create_task(fetcher.fetch(url)) for url in urls}
        try:
            for finished in asyncio.as_completed(tasks.values()):
                page = await finished
                if on_page is not None:
                    on_page(page)
        finally:
            # Only reached early when on_page raised (fetcher.fetch itself never does).
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        return [tasks[link.url].result() for link in links]


def fetch_batch(
    links: Sequence[Link],
    settings: FetchSettings,
    on_page: Callable[[Page], None] | None = None,
    robots_cache: RobotsCache | None = None,
) -> list[Page]:
    """Blocking wrapper around `fetch_pages` for plain code and Prefect tasks.

    Works in any thread: Prefect runs tasks in worker threads that have no event loop
    (`asyncio.run` makes one). Where a loop is already running in this thread (Jupyter, an
    async task), `asyncio.run` would refuse, so the batch runs in a helper thread instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fetch_pages(links, settings, on_page, robots_cache))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch_batch") as pool:
        work = fetch_pages(links, settings, on_page, robots_cache)
        return pool.submit(asyncio.run, work).result()


def fetch_robots(origins: Sequence[str], settings: FetchSettings, cache: RobotsCache) -> None:
    """Read the robots.txt of every origin into `cache`, under the usual limits.

    Run before the batches: they then find every host's rules in the cache, so robots.txt
    is read once per host even when many batches run at the same time (or on other
    machines), instead of once per host per batch.
    """
    if not settings.respect_robots:
        return

    async def read_all() -> None:
        async with _client(settings) as client:
            fetcher = _Fetcher(settings, client, cache)
            await asyncio.gather(*(read_one(fetcher, origin) for origin in origins))

    async def read_one(fetcher: _Fetcher, origin: str) -> None:
        # Reading ahead is only an optimisation: an origin that cannot be read here (a bug,
        # an odd URL) is read again, or refused with a verdict, by the batch that needs it.
        # One odd link must never end the run.
        try:
            await fetcher._robots(robots_url(origin))
        except Exception:
            logger.exception("robots.txt of %s could not be read ahead; the batch will", origin)

    asyncio.run(read_all())


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Certificate checks with certifi's CA bundle, built once per process.

    httpx would build a fresh context for every client, and loading the CA bundle takes
    tens of milliseconds: with a client per batch, that was a sizeable share of a whole
    batch's fetching time. One context may serve many clients and threads at once."""
    return ssl.create_default_context(cafile=certifi.where())


def _client(settings: FetchSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=_tls_context(),
        # Proxy variables must never reroute our traffic (or loopback test traffic).
        trust_env=False,
        # We follow redirects by hand, so that each hop is checked and counted.
        follow_redirects=False,
        timeout=httpx.Timeout(settings.total_timeout_s, connect=settings.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        ),
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
        },
    )


# ---------------------------------------------------------------------------------------
# Small records used by the fetcher


@dataclass(frozen=True)
class Outcome:
    """What a request, or a chain of redirects, came to (the fetcher's working record;
    `Page` is what leaves this module)."""

    url: str  # the URL this is about: after redirects, the last one
    status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    failure: Verdict | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    redirect_to: str | None = None


class RobotsCache(Protocol):
    """Keeps robots.txt answers between batches, so that each host's robots.txt is read
    once per corpus rather than once per batch (the corpus store implements it)."""

    def robots_get(self, origin: str) -> Outcome | None: ...

    def robots_put(self, origin: str, outcome: Outcome) -> None: ...


def origin_of(url: str) -> str:
    """ "scheme://host:port", the unit robots.txt rules apply to; IPv6 hosts in brackets
    ("http://[::1]:8080"), so that the origin is itself a URL that parses back.

    Raises ValueError (one line, naming the URL) when `url` is not an absolute http(s) URL.
    """
    scheme, host, port = _origin(url)
    return f"{scheme}://{_url_host(host)}:{port}"


def robots_url(url: str) -> str:
    """The robots.txt URL for the origin of `url` (a page URL or an origin)."""
    scheme, host, port = _origin(url)
    return str(httpx.URL(scheme=scheme, host=host, port=port, path="/robots.txt"))


def _failed(url: str, reason: str, detail: str = "", **fields) -> Outcome:
    return Outcome(url, failure=Verdict("fetch", reason, detail), **fields)


@dataclass(frozen=True)
class _Destination:
    """Whether we may connect to a host, and to which address (see `_Fetcher._destination`)."""

    refusal: Verdict | None = None
    retryable: bool = False  # a DNS failure may be temporary
    pinned_ip: str | None = None


class HostState:
    """Politeness bookkeeping for one origin (scheme, host, port).

    `slots` bounds the requests in flight to the host; `next_start` is the earliest time
    (time.monotonic) at which the next request may start. Both live on the event loop's
    single thread, so reading and updating them between two `await`s needs no lock.
    """

    def __init__(self, connections: int, delay_s: float) -> None:
        self.slots = asyncio.Semaphore(connections)
        self.delay_s = delay_s
        self.next_start = 0.0
        self.robots: asyncio.Future[RobotsRules] | None = None

    def push_back(self, seconds: float) -> None:
        """The host asked us to wait (Retry-After): no request to it before then."""
        self.next_start = max(self.next_start, time.monotonic() + seconds)


@dataclass(frozen=True)
class RobotsRules:
    """What one host's robots.txt allows. No parser and no `unreachable`: no rules at all."""

    parser: RobotFileParser | None = None
    unreachable: Verdict | None = None  # why robots.txt could not be read: disallow all

    def refusal(self, url: str, user_agent: str) -> Verdict | None:
        if self.unreachable is not None:
            failure = self.unreachable
            if failure.reason in ("connection_error", "timeout"):
                # The host itself is down or silent: say so, that is the useful reason.
                return Verdict("fetch", failure.reason, f"robots.txt: {failure.detail}")
            return Verdict(
                "fetch",
                "robots_unreachable",
                f"robots.txt could not be read ({failure.reason}: {failure.detail}); "
                "RFC 9309 says to assume everything is disallowed",
            )
        if self.parser is not None and not self.parser.can_fetch(user_agent, url):
            return Verdict("fetch", "robots_disallowed", f"robots.txt disallows {url}")
        return None

    def delay_s(self, user_agent: str) -> float | None:
        """The pause robots.txt asks for between requests (Crawl-delay or Request-rate)."""
        if self.parser is None:
            return None
        delays = []
        if (crawl_delay := self.parser.crawl_delay(user_agent)) is not None:
            delays.append(float(crawl_delay))
        rate = self.parser.request_rate(user_agent)
        if rate is not None and rate.requests > 0:
            delays.append(rate.seconds / rate.requests)
        return max(delays, default=None)


def robots_rules(outcome: Outcome) -> RobotsRules:
    """Turn the fetch of a robots.txt into rules, following RFC 9309 section 2.3.1.

    - 2xx: parse it.
    - 4xx other than 429 ("unavailable"): the site has no rules for us; allow everything.
    - more redirects than allowed: the RFC lets us treat it as unavailable; allow.
    - 5xx, 429, timeouts, connection errors ("unreachable"): the RFC says to assume a
      complete disallow, so as not to crawl a site whose rules we could not read. Within
      one run that is final (robots.txt itself was retried); a later run tries again.
      The pages get "robots_unreachable", or "timeout" / "connection_error" when the
      host did not answer at all.
    """
    if outcome.failure is None:
        parser = RobotFileParser()
        parser.parse((outcome.body or b"").decode("utf-8", errors="replace").splitlines())
        return RobotsRules(parser=parser)
    status = outcome.status
    if status is not None and 400 <= status < 500 and status != 429:
        return RobotsRules()
    if outcome.failure.reason in ("too_many_redirects", "redirect_loop"):
        return RobotsRules()
    return RobotsRules(unreachable=outcome.failure)


# ---------------------------------------------------------------------------------------
# Pure helpers


def url_refusal(url: str) -> Verdict | None:
    """Why this URL cannot be fetched as written (an `invalid_url` verdict), or None.

    Checked for every hop before any network work: redirect targets and hand-made link
    lists never went through the link rules' normalisation. It is the first of the three
    refusals `_fetch_one` asks for, before the destination's and robots.txt's.
    """
    try:
        parsed = httpx.URL(url)
    # ValueError: a lone surrogate, which httpx cannot percent-encode (UnicodeEncodeError).
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return Verdict("fetch", "invalid_url", f"{url[:200]!r}: {exc}")
    if parsed.scheme not in ("http", "https"):
        return Verdict("fetch", "invalid_url", f"{url!r}: scheme is not http or https")
    try:
        # The standard library's parser reads the URL too (robots.txt rules, redirects);
        # where it disagrees ("http://[@a.com": no IPv6 literal for it), refuse here.
        urlsplit(url)
    except ValueError as exc:
        return Verdict("fetch", "invalid_url", f"{url[:200]!r}: {exc}")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not host:
        return Verdict("fetch", "invalid_url", f"{url!r}: no host")
    if ":" not in host and not HOST_NAME.match(host):  # ":" only in IPv6 literals
        return Verdict("fetch", "invalid_url", f"{url!r}: {host!r} is not a host name")
    try:
        # httpx decodes "xn--" labels when it handles the response (cookies): a label that
        # is not valid Punycode ("xn--") would fail there, after the request, as a bug.
        parsed.host  # noqa: B018
    except ValueError as exc:  # idna.IDNAError is a UnicodeError, a ValueError
        return Verdict("fetch", "invalid_url", f"{url!r}: {host!r} is not valid IDNA: {exc}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return Verdict("fetch", "invalid_url", f"{url!r}: port {parsed.port} out of range")
    return None


def address_refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why we would not connect to this address, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:  # shared 100.64/10 (carrier NAT) and other special ranges
        return "not global"
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; some servers leave the zone out
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of a body are clearly not text (HTML has no NUL bytes)."""
    if head.startswith(UTF16_BOMS):  # UTF-16 text is full of NUL bytes, legitimately
        return False
    return head.startswith(BINARY_SIGNATURES) or b"\x00" in head


def media_type(content_type: str | None) -> str:
    """'text/html; charset=utf-8' -> 'text/html'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_length(headers: httpx.Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL, parsed, never split by hand: an IPv6
    literal's colons ("http://[::1]:8080/") would otherwise be read as a port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ValueError(f"not a URL: {url[:200]!r}: {exc}") from None
    host = parsed.raw_host.decode("ascii", errors="replace")
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, host, port


def _url_host(host: str) -> str:
    """A host as written in a URL: IPv6 addresses (the only hosts with ":") in brackets."""
    return f"[{host}]" if ":" in host else host


async def _read_body(response: httpx.Response, limit: int, sniff: bool) -> tuple[bytes, str]:
    """Read at most `limit` bytes while streaming; stop early rather than hold more.

    Returns the bytes read and "" when complete, or what was read so far and the reason
    for stopping: "too_large" or "binary_content".
    """
    chunks: list[bytes] = []
    size = 0
    sniffed = not sniff
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if not sniffed and size >= SNIFF_BYTES:
            sniffed = True
            if looks_binary(b"".join(chunks)[:SNIFF_BYTES]):
                return b"".join(chunks), "binary_content"
        if size > limit:
            return b"".join(chunks)[:limit], "too_large"
    body = b"".join(chunks)
    if not sniffed and looks_binary(body[:SNIFF_BYTES]):
        return body, "binary_content"
    return body, ""


async def _resolve(host: str) -> list[str]:
    """The addresses a host name resolves to (a thread does the blocking look-up)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    # IPv6 link-local answers carry a zone ("fe80::1%eth0"), which ipaddress rejects.
    return list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))


# ---------------------------------------------------------------------------------------
# The fetcher: one per batch, holding the per-host state of that batch


class _Fetcher:
    def __init__(
        self,
        settings: FetchSettings,
        client: httpx.AsyncClient,
        robots_cache: RobotsCache | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.robots_cache = robots_cache
        self._all_slots = asyncio.Semaphore(settings.max_connections)
        self._hosts: dict[tuple[str, str, int], HostState] = {}
        self._destinations: dict[str, asyncio.Future[_Destination]] = {}
        self._random = random.Random()

    async def fetch(self, url: str) -> Page:
        """Fetch one URL into a `Page`; never raises (except when cancelled)."""
        try:
            outcome, attempts = await self._with_retries(url)
        except Exception as exc:  # a bug here must not sink the other pages of the batch
            logger.exception("unexpected error while fetching %s", url)
            outcome, attempts = _failed(url, "internal_error", repr(exc)), 1
        if outcome.failure is not None:
            logger.debug("fetch %s: %s %s", url, outcome.failure.reason, outcome.failure.detail)
        return Page(
            url=url,
            final_url=outcome.url,
            status=outcome.status,
            content_type=outcome.content_type,
            body=outcome.body if outcome.failure is None else None,
            fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
            failure=outcome.failure,
            attempts=attempts,
        )

    # -- retries and redirects ----------------------------------------------------------

    async def _with_retries(self, url: str, robots: bool = False) -> tuple[Outcome, int]:
        """Try up to 1 + `retries` times; wait longer after each failure."""
        attempt = 1
        while True:
            outcome = await self._follow_redirects(url, robots)
            if not outcome.retryable or attempt > self.settings.retries:
                return outcome, attempt
            wait = self._retry_wait(attempt, outcome.retry_after_s)
            if wait is None:
                assert outcome.failure is not None  # only failures are retryable
                detail = (
                    f"{outcome.failure.detail}; Retry-After asks for "
                    f"{outcome.retry_after_s:.0f} s, more than backoff_max_s"
                )
                return replace(outcome, failure=replace(outcome.failure, detail=detail)), attempt
            await asyncio.sleep(wait)
            attempt += 1

    def _retry_wait(self, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`; None: the server wants too long.

        Without Retry-After: exponential backoff (base, 2 x base, 4 x base, ...), with
        jitter so that pages that failed together do not all come back at the same moment.
        A Retry-After is the server's own answer: wait that long, or give up if it is more
        than `backoff_max_s` (retrying earlier than asked would be rude).
        """
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.settings.backoff_max_s else None
        ceiling = min(
            self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1)
        )
        return ceiling * self._random.uniform(0.5, 1.0)

    async def _follow_redirects(self, url: str, robots: bool) -> Outcome:
        """Request `url`, then each redirect target in turn (each one checked anew)."""
        visited = {url}
        current = url
        for _ in range(self.settings.max_redirects + 1):
            outcome = await self._fetch_one(current, robots)
            if outcome.redirect_to is None:
                return outcome
            target = outcome.redirect_to
            if target in visited:
                return _failed(
                    current, "redirect_loop", f"redirects back to {target}", status=outcome.status
                )
            visited.add(target)
            current = target
        return _failed(
            current,
            "too_many_redirects",
            f"more than {self.settings.max_redirects} redirects from {url}",
            status=outcome.status,
        )

    async def _fetch_one(self, url: str, robots: bool) -> Outcome:
        """One hop: check the URL, the destination and robots.txt, then request it."""
        if (refusal := url_refusal(url)) is not None:
            return Outcome(url, failure=refusal)
        destination = await self._destination(url)
        if destination.refusal is not None:
            return Outcome(url, failure=destination.refusal, retryable=destination.retryable)
        if self.settings.respect_robots and not robots:
            rules = await self._robots(url)
            if (refusal := rules.refusal(url, self.settings.user_agent)) is not None:
                return Outcome(url, failure=refusal)
        return await self._request(url, destination.pinned_ip, robots)

    # -- private addresses --------------------------------------------------------------

    async def _destination(self, url: str) -> _Destination:
        """May we connect to this URL's host? Checked once per host and batch."""
        if self.settings.allow_private_addresses:
            return _Destination()
        host = httpx.URL(url).raw_host.decode("ascii")
        if host not in self._destinations:
            self._destinations[host] = asyncio.ensure_future(self._check_host(host))
        destination = await asyncio.shield(self._destinations[host])
        if destination.retryable:  # a DNS failure: ask again on the next attempt
            self._destinations.pop(host, None)
        return destination

    async def _check_host(self, host: str) -> _Destination:
        """Refuse the host if ANY of its addresses is one we refuse.

        For a host name we then connect to the address we checked ("pinning"), not to
        whatever a second DNS look-up returns: otherwise a hostile DNS server could answer
        a public address to the check and 10.0.0.1 to the connection (DNS rebinding).
        Pinning is done for http only: with https, certificate verification already stops
        a rebound connection (an internal server has no certificate for the attacker's
        name), and pooled TLS connections must keep their own server name.
        """
        try:
            addresses = [ipaddress.ip_address(host)]
            literal = True
        except ValueError:
            literal = False
            try:
                addresses = [ipaddress.ip_address(a) for a in await _resolve(host)]
            except (OSError, UnicodeError) as exc:
                refusal = Verdict("fetch", "connection_error", f"cannot resolve {host}: {exc}")
                return _Destination(refusal=refusal, retryable=True)
        for address in addresses:
            if self._allowed_network(address):
                continue
            if (kind := address_refused(address)) is not None:
                detail = f"{host} is {address}, a {kind} address"
                return _Destination(refusal=Verdict("fetch", "private_address", detail))
        return _Destination(pinned_ip=None if literal else str(addresses[0]))

    def _allowed_network(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.settings.allowed_networks)

    # -- robots.txt ---------------------------------------------------------------------

    def _host(self, url: str) -> HostState:
        origin = _origin(url)
        if origin not in self._hosts:
            self._hosts[origin] = HostState(
                self.settings.per_host_connections, self.settings.per_host_delay_s
            )
        return self._hosts[origin]

    async def _robots(self, url: str) -> RobotsRules:
        """The rules of this URL's host, fetched once; concurrent callers share the fetch."""
        host = self._host(url)
        if host.robots is None:
            host.robots = asyncio.ensure_future(self._load_robots(url, host))
        return await asyncio.shield(host.robots)

    async def _load_robots(self, url: str, host: HostState) -> RobotsRules:
        where = robots_url(url)
        origin = origin_of(url)
        try:
            outcome = self.robots_cache.robots_get(origin) if self.robots_cache else None
            if outcome is None:
                outcome, _ = await self._with_retries(where, robots=True)
                if self.robots_cache is not None:
                    self.robots_cache.robots_put(origin, outcome)
            rules = robots_rules(outcome)
        except Exception as exc:  # a bug: be conservative about this host, go on
            logger.exception("unexpected error while reading %s", where)
            rules = RobotsRules(unreachable=Verdict("fetch", "internal_error", repr(exc)))
        if (asked := rules.delay_s(self.settings.user_agent)) is not None:
            host.delay_s = max(host.delay_s, min(asked, self.settings.max_crawl_delay_s))
        return rules

    # -- one HTTP request ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _turn(self, host: HostState) -> AsyncIterator[None]:
        """Wait for a slot at this host, its delay, then a slot in the global limit.

        The host slot comes first and the global one last, so that a busy or slow host
        never holds global slots that requests to other hosts could use.
        """
        async with host.slots:
            while True:
                await asyncio.sleep(max(0.0, host.next_start - time.monotonic()))
                await self._all_slots.acquire()
                # Someone may have moved next_start (another request, a Retry-After)
                # while we waited for the global slot: check again.
                if time.monotonic() >= host.next_start:
                    break
                self._all_slots.release()
            host.next_start = time.monotonic() + host.delay_s
            try:
                yield
            finally:
                self._all_slots.release()

    async def _request(self, url: str, pinned_ip: str | None, robots: bool) -> Outcome:
        """GET `url` once (no redirects followed) and read its body within the limits."""
        host = self._host(url)
        target, headers = url, {}
        parsed = httpx.URL(url)
        if pinned_ip is not None and parsed.scheme == "http":  # "HTTP://" is http too
            target = str(parsed.copy_with(host=pinned_ip))
            headers["Host"] = parsed.netloc.decode("ascii")
        async with self._turn(host):
            try:
                async with asyncio.timeout(self.settings.total_timeout_s):
                    async with self.client.stream("GET", target, headers=headers) as response:
                        return await self._read(url, response, host, robots)
            except (TimeoutError, httpx.TimeoutException) as exc:
                detail = f"no complete answer within the time limits ({type(exc).__name__})"
                return _failed(url, "timeout", detail, retryable=True)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                return _failed(url, "invalid_url", str(exc))
            except httpx.DecodingError as exc:
                return _failed(url, "decoding_error", str(exc))
            except (httpx.TransportError, OSError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
                return _failed(url, "connection_error", detail, retryable=True)

    async def _read(
        self, url: str, response: httpx.Response, host: HostState, robots: bool
    ) -> Outcome:
        """Decide from the headers first, and read the body only when it is wanted."""
        status = response.status_code
        content_type = response.headers.get("content-type")
        about = {"status": status, "content_type": content_type}
        if status in REDIRECT_STATUSES and "location" in response.headers:
            location = response.headers["location"].strip()
            try:
                target = urldefrag(urljoin(url, location))[0]
            except ValueError as exc:  # e.g. "http://[::1/": an unbalanced bracket
                return _failed(url, "invalid_url", f"redirect Location {location!r}: {exc}")
            return Outcome(url, **about, redirect_to=target)
        if status == 429 or status >= 500:  # worth another try, later
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:  # the whole host is asked to wait, not just this page
                host.push_back(min(retry_after, self.settings.backoff_max_s))
            return _failed(
                url,
                f"http_{status}",
                response.reason_phrase,
                **about,
                retryable=True,
                retry_after_s=retry_after,
            )
        if not 200 <= status < 300:
            return _failed(url, f"http_{status}", response.reason_phrase, **about)
        if robots:  # keep the first ROBOTS_MAX_BYTES whatever comes after (RFC 9309)
            body, _ = await _read_body(response, ROBOTS_MAX_BYTES, sniff=False)
            return Outcome(url, **about, body=body)
        return await self._read_page(url, response, about)

    async def _read_page(self, url: str, response: httpx.Response, about: dict) -> Outcome:
        if media_type(about["content_type"]) not in HTML_TYPES:
            return _failed(url, "not_html", f"Content-Type {about['content_type']!r}", **about)
        limit = self.settings.max_bytes
        if (length := declared_length(response.headers)) is not None and length > limit:
            return _failed(url, "too_large", f"Content-Length {length} > {limit} bytes", **about)
        body, stopped = await _read_body(response, limit, self.settings.sniff_binary)
        if stopped == "too_large":
            return _failed(url, "too_large", f"body over {limit} bytes", **about)
        if stopped == "binary_content":
            return _failed(url, "binary_content", "binary bytes served as HTML", **about)
        return Outcome(url, **about, body=body)
