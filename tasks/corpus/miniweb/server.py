"""The mini-web's HTTP server: `MiniWeb` serves a `Site` (site.py) on 127.0.0.1 (or on
another local address given as `host`, "::1" included).

It runs Python's own `ThreadingHTTPServer` in a background thread, one thread per
connection, and counts what it sees: requests per path (`hits`), body bytes sent,
every request with its User-Agent, and the most requests in flight at once, so that
tests can check the fetcher's politeness from the server's side.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tasks.corpus.miniweb.articles import Article
from tasks.corpus.miniweb.site import (
    BadCase,
    ErrorPage,
    FailsFirst,
    Oversized,
    Redirect,
    StallsMidBody,
    StaticPage,
    build_site,
    default_robots_txt,
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    path: str
    started: float  # time.monotonic() when the request line was read
    user_agent: str | None
    host: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must never keep the process alive
    request_queue_size = 128  # bursts of connections are expected, not an attack
    web: MiniWeb

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up early are part of the tests, not errors


class _Server6(_Server):
    """The same server on an IPv6 address ("::1"): a socket of the other family."""

    address_family = socket.AF_INET6


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
    `robots_status` serves it with another status; `delay_s` slows every static page down;
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
        self._site = build_site(articles, seed)
        self.bad_cases: list[BadCase] = self._site.bad_cases
        self.host, self.port = host, port
        self.delay_s, self.stall_s = delay_s, stall_s
        self.huge_bytes, self.retry_after_s = huge_bytes, retry_after_s
        self.robots_status = robots_status
        self.robots_txt = (
            default_robots_txt(crawl_delay) if robots_txt == self.DEFAULT_ROBOTS else robots_txt
        )

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
        return [article.path for article in self._site.articles]

    def article(self, path: str) -> Article:
        return next(article for article in self._site.articles if article.path == path)

    def case(self, name: str) -> BadCase:
        return next(case for case in self.bad_cases if case.name == name)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mini-web is not running: use it as a context manager")
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"http://{host}:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    # -- answering a request ------------------------------------------------------------

    def _respond(self, handler: _Handler, path: str, hit: int) -> None:
        if path == "/robots.txt":
            self._send_robots_txt(handler)
            return
        match self._site.response(path):
            case StaticPage(content_type, body):
                if self.delay_s:
                    self._stopping.wait(self.delay_s)  # cut short by stop()
                handler.send(200, body, content_type)
            case ErrorPage(status, body):
                handler.send(status, body, "text/plain")
            case Redirect(status, location):
                handler.redirect(status, location)
            case FailsFirst(status, page):
                self._fail_first(handler, hit, status, page)
            case StallsMidBody():
                self._stall(handler)
            case Oversized(declare_length):
                self._send_oversized(handler, path, declare_length)
            case None:
                handler.send(404, b"Not Found", "text/plain")

    def _send_robots_txt(self, handler: _Handler) -> None:
        if self.robots_txt is None:
            handler.send(404, b"Not Found", "text/plain")
        else:
            body = self.robots_txt.encode("utf-8")
            handler.send(self.robots_status, body, "text/plain; charset=utf-8")

    def _fail_first(self, handler: _Handler, hit: int, status: int, page: bytes) -> None:
        """`status` for the first request of a path (since the last reset), then the page."""
        if hit > 1:
            handler.send(200, page, "text/html; charset=utf-8")
        elif status == 429:
            handler.send(
                429, b"Too Many Requests", "text/plain", Retry_After=str(self.retry_after_s)
            )
        else:
            handler.send(status, b"Internal Server Error", "text/plain")

    def _stall(self, handler: _Handler) -> None:
        """Promise 100 kB, send 2 kB, then go quiet (until `stall_s` or shutdown)."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"<!DOCTYPE html><html><body><p>" + b"Loading " * 250)
        self._stopping.wait(self.stall_s)
        handler.close_connection = True

    def _send_oversized(self, handler: _Handler, path: str, declare_length: bool) -> None:
        """`huge_bytes` of HTML written 64 KiB at a time; the bytes that the client took
        are counted, so a test can check that it hung up early."""
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
        server_class = _Server6 if ":" in self.host else _Server
        self._server = server_class((self.host, self.port), _Handler)
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
