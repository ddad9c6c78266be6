"""The comparison page: annotators judge two continuations blind; an admin watches.

A small FastAPI app that renders plain HTML on the server (no JavaScript framework; a
few lines of script add keyboard shortcuts, and the page works without them).

    GET  /join/<token>   an invite link: starts the annotator's session, then -> /judge
    GET  /judge          the next item: the prompt and two continuations, sides as recorded
    POST /vote           item_id, choice (left/right/tie/both_bad), comment, csrf
    GET  /admin          live counts, per-annotator quality, win rates (admin token)
    POST /admin/login    the admin token, typed once; POST /admin/invite adds an annotator
    POST /admin/logout   ends the admin session (the form carries the session's token)
    GET  /admin/export/<batch>.csv|.jsonl   every vote with what was shown
    GET  /health         for the flow that starts or reuses the page

What keeps it safe:
- Model text is untrusted: Jinja escapes everything it renders, and the Content
  Security Policy refuses inline scripts, so even a `<script>` that slipped through
  would not run.
- Invite tokens are stored hashed; the token leaves the address bar at once (the join
  link redirects) and no page sends a Referer.
- Sessions live in a signed cookie. The signing key is derived (HMAC) from two halves:
  one kept in the database, one in a file readable by its owner only beside it (or the
  admin token, for a database server), so a copy of the database alone cannot forge a
  session, and a restarted server still knows everyone. Every form carries the session's
  own random token, so another site cannot make a logged-in browser vote (cross-site
  request forgery).
- Admin sessions name the admin token they were opened with (a hash prefix) and last
  ADMIN_SESSION_S: a new token, a logout or the clock ends them.
- A body over `max_body_bytes` is refused (413) before any form is parsed or any
  session looked at; /join and /admin/login have a per-client rate limit (429).
- A missing session or admin token is 401, a wrong one 403; a bad item or choice is a
  4xx with a one-line message. Every answer, a 500 included, carries SECURITY_HEADERS.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.preferences import analysis
from tasks.preferences.batches import (
    annotator_stats,
    batch_votes,
    choice_counts,
    next_item,
    vote_records,
)
from tasks.preferences.jsonlines import json_line
from tasks.preferences.store import (
    CHOICES,
    Annotator,
    Batch,
    PreferenceError,
    annotator_for,
    invite,
    open_database,
    record_vote,
    web_secret,
)
from tasks.preferences.summary import interval_shown, shown
from tasks.private_files import private_secret, sqlite_file

APP_NAME = "gpt2lab-comparisons"  # what /health answers, so a flow knows the page is ours
HERE = Path(__file__).parent
SQLITE_WAIT_S = 30  # the longest a request waits for its turn at a SQLite file
CHOICE_LABELS = {
    "left": "Left is better",
    "right": "Right is better",
    "tie": "Tie",
    "both_bad": "Both bad",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
MIN_ADMIN_TOKEN_CHARS = 32  # e.g. secrets.token_urlsafe(24): 192 random bits
ANNOTATOR_SESSION_S = 30 * 24 * 3600  # the cookie's life: an annotator comes back for weeks
ADMIN_SESSION_S = 12 * 3600  # an admin signs in again each working day
MAX_BODY_BYTES = 64 * 1024  # a vote form is well under 10 kB (comments are cut at 2,000)
# Per client address: (burst, seconds per extra request). Invite tokens and the admin
# token are too long to guess; the limits keep a script from trying, and from making the
# server hash tokens as fast as it can. /join allows a room of annotators behind one proxy.
JOIN_RATE = (120, 0.5)
ADMIN_LOGIN_RATE = (10, 6.0)
_ITEM_ID = re.compile(r"[0-9]{1,9}")  # ASCII digits only; fits every database's integer
# Requests handled at once in one server process (the rest wait in line, in order). A
# request is short (a few database statements and a template), and threads beyond a few
# only take turns at the interpreter lock and the CPU: under 50 clients voting at once on
# 2 cores, anyio's default of 40 gave vote p95 of 140 ms on SQLite and 210-250 ms on
# PostgreSQL; 8 gave 100 and 130-140 ms, with more votes per second
# (benchmarks/bench_comparison_page.py).
REQUEST_THREADS = 8


class PageError(Exception):
    """Ends a request with `status` and a one-line message shown to the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(
    database_url: str,
    admin_token: str,
    *,
    https_only: bool = False,
    secret_file: Path | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The page for the batches in `database_url`; `admin_token` opens the admin pages.

    `https_only` marks the session cookie Secure (the page is behind TLS). `secret_file`
    holds the outside half of the cookie key: by default `<database>.secret` beside a
    SQLite file; for a database server, None derives it from the admin token instead (so
    every worker agrees, and a new admin token signs everyone out). `allowed_hosts`
    (Starlette's TrustedHostMiddleware) refuses other Host headers; None takes any."""
    if len(admin_token) < MIN_ADMIN_TOKEN_CHARS:
        raise ValueError(
            f"the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters long"
            " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        database_half = web_secret(session)
    if secret_file is None and (database_file := sqlite_file(database_url)) is not None:
        secret_file = database_file.with_name(database_file.name + ".secret")
    outside_half = private_secret(secret_file) if secret_file is not None else admin_token
    app = FastAPI(
        title="gpt2lab comparisons",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_bounded_request_threads,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=_cookie_key(outside_half, database_half),
        session_cookie="gpt2lab",
        same_site="lax",
        https_only=https_only,
        max_age=ANNOTATOR_SESSION_S,
    )
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
    templates.env.filters["shown"] = shown  # a rate, or "no votes yet" (never "nan")
    templates.env.globals["interval_shown"] = interval_shown
    pages = _Pages(engine, templates, admin_token)
    # Outermost last: the body limit sees the request before anything reads it, and the
    # security headers go on every answer, the body limit's 413 and a crash's 500 too.
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": error.message}, status_code=error.status)
        return templates.TemplateResponse(
            request, "message.html", {"message": error.message}, status_code=error.status
        )

    app.get("/health")(lambda: {"status": "ok", "app": APP_NAME})
    app.get("/", response_class=HTMLResponse)(pages.home)
    app.get("/join", response_class=HTMLResponse)(pages.join_without_token)
    app.get("/join/{token}")(pages.join)
    app.get("/judge", response_class=HTMLResponse)(pages.judge)
    app.post("/vote")(pages.vote)
    app.get("/admin", response_class=HTMLResponse)(pages.admin)
    app.post("/admin/login")(pages.admin_login)
    app.post("/admin/logout")(pages.admin_logout)
    app.post("/admin/invite", response_class=HTMLResponse)(pages.admin_invite)
    app.get("/admin/export/{batch_name}.{kind}")(pages.export)
    app.state.engine = engine
    return app


@asynccontextmanager
async def _bounded_request_threads(_app: FastAPI) -> AsyncIterator[None]:
    """Run the page's (synchronous) handlers on at most REQUEST_THREADS threads. The
    limiter belongs to the server's event loop, so it is set once that loop runs."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    yield


def _cookie_key(outside_half: str, database_half: str) -> str:
    """The cookie signing key: HMAC-SHA256 of the database's secret under the outside one.
    Either half alone gives nothing. Both are long secrets (a random one, or an admin token
    of at least MIN_ADMIN_TOKEN_CHARS), so no slow password-style derivation is needed."""
    message = b"gpt2lab session cookies\0" + database_half.encode()
    return hmac.new(outside_half.encode(), message, hashlib.sha256).hexdigest()


def _token_generation(admin_token: str) -> str:
    """Which admin token a session was opened with: 64 bits of its hash, enough to tell
    tokens apart and far too few to help anyone guess it (the cookie is readable)."""
    return hashlib.sha256(b"gpt2lab admin\0" + admin_token.encode()).hexdigest()[:16]


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set them itself, and answers
    an unhandled error with a plain 500 that carries them too (Starlette's own 500 is sent
    from outside every middleware, so it would go without).

    A plain ASGI middleware, not `@app.middleware("http")`: that one runs each response
    through an extra task and stream, which cost about a sixth of the server's CPU per
    request under load (benchmarks/bench_comparison_page.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if not started:
                await _error_answer(error)(scope, receive, send_with_headers)
            raise  # still logged by the server; Starlette sends nothing more once started


def _error_answer(error: Exception) -> PlainTextResponse:
    """The answer to an unhandled error: 503 "try again" when the database is away
    (restarting, unreachable: nothing was stored, and resending the vote is safe), else a
    plain 500."""
    away = isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
    if away:
        return PlainTextResponse(
            "The vote store is unavailable; please try again in a moment.",
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return PlainTextResponse("Internal server error.", status_code=500)


class _BodyTooLarge(HTTPException):
    """Raised from inside `receive`; an HTTPException, so FastAPI's body parsing passes
    it on as it is (any other error there becomes a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body is over the limit of {max_bytes} bytes.")


class _BodyLimit:
    """Refuses a request body over `max_bytes` (413) before anything parses it.

    A declared Content-Length over the limit is refused at once, before the app runs; a
    body without one (chunked) is counted as it streams in, and reading stops at the
    chunk that crosses the limit. So a form parser never spools more than `max_bytes`,
    whatever the sender says, and no session or token is looked at first."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not (
            declared.isascii() and declared.isdigit() and int(declared) <= self.max_bytes
        ):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is over the limit of {self.max_bytes} bytes."
        # Connection: close, so the server does not read the rest of the body first.
        response = PlainTextResponse(message, status_code=413, headers={"Connection": "close"})
        await response(scope, receive, send)


class _RateLimit:
    """A token bucket per client address, kept in this process (each worker process
    counts on its own; a proxy in front can limit across them). `burst` requests at once,
    then one per `seconds_each`."""

    def __init__(self, burst: int, seconds_each: float, max_clients: int = 10_000) -> None:
        self.burst = burst
        self.seconds_each = seconds_each
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._lock = threading.Lock()

    def check(self, request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.max_clients:  # bounded memory under a flood
                self._buckets.clear()
            tokens, when = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) / self.seconds_each)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                raise PageError(429, "Too many attempts from your address: wait a minute.")
            self._buckets[client] = (tokens - 1, now)


class _Pages:
    """The request handlers, sharing the database engine and the templates."""

    def __init__(self, engine: Engine, templates: Jinja2Templates, admin_token: str) -> None:
        self.engine = engine
        self.templates = templates
        self.admin_token = admin_token
        self.admin_generation = _token_generation(admin_token)
        self.join_limit = _RateLimit(*JOIN_RATE)
        self.login_limit = _RateLimit(*ADMIN_LOGIN_RATE)
        # SQLite: one transaction at a time in this process. Each one takes the file's write
        # lock when it begins (see store.py), so they run one at a time anyway; but a request
        # that finds the lock taken sleeps and retries (SQLite's busy timeout), up to 100 ms
        # between tries, and misses the moments it is free. Waiting here instead, each is
        # woken as soon as the one before it ends: under 50 clients voting at once, the
        # slowest votes took 5 s before this and 1 s after. (Other processes on the same
        # file still wait on SQLite's lock.) PostgreSQL runs transactions side by side.
        self._sqlite_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        lock = self._sqlite_lock
        # The same bound as SQLite's own busy timeout (store.py): past it, a clear 503.
        if lock is not None and not lock.acquire(timeout=SQLITE_WAIT_S):
            raise PageError(503, "The page is busy: wait a moment, then reload it.")
        try:
            # Objects stay readable after the transaction (no reload on first access), so
            # pages are rendered after the lock is released.
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        finally:
            if lock is not None:
                lock.release()

    def _render(self, request: Request, template: str, status: int = 200, **context: Any):
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    # --- annotators -------------------------------------------------------------------

    def home(self, request: Request):
        if request.session.get("annotator"):
            return RedirectResponse("/judge", status_code=303)
        raise PageError(401, "Open the invite link you were sent to start judging.")

    def join_without_token(self, request: Request):
        raise PageError(401, "This link has no invite token: open the full link you were sent.")

    def join(self, request: Request, token: str):
        self.join_limit.check(request)
        with self._session() as session:
            annotator = annotator_for(session, token)
            if annotator is None or annotator.simulated:
                raise PageError(403, "This invite link is not valid (mistyped or withdrawn).")
            annotator_id = annotator.id
        request.session.update(annotator=annotator_id, csrf=secrets.token_urlsafe(24))
        return RedirectResponse("/judge", status_code=303)

    def _annotator(self, session: Session, request: Request) -> Annotator:
        annotator_id = request.session.get("annotator")
        if annotator_id is None:
            raise PageError(401, "You are not signed in: open your invite link first.")
        annotator = session.get(Annotator, annotator_id)
        if annotator is None:
            raise PageError(403, "Your invitation was withdrawn.")
        return annotator

    def judge(self, request: Request):
        with self._session() as session:
            annotator = self._annotator(session, request)
            item, progress = next_item(session, annotator)
        if item is None:
            return self._render(request, "done.html", progress=progress)
        return self._render(
            request,
            "judge.html",
            item=item,
            progress=progress,
            csrf=request.session["csrf"],
            labels=CHOICE_LABELS,
        )

    def vote(
        self,
        request: Request,
        item_id: str = Form(""),
        choice: str = Form(""),
        comment: str = Form(""),
        csrf: str = Form(""),
    ):
        _check_csrf(request, csrf)
        if not _ITEM_ID.fullmatch(item_id):
            raise PageError(400, f"item_id {item_id!r} is not an item number.")
        if choice not in CHOICES:
            raise PageError(422, f"choice {choice!r} is not one of: {', '.join(CHOICES)}.")
        with self._session() as session:
            annotator = self._annotator(session, request)
            try:
                record_vote(session, annotator, int(item_id), choice, comment.strip())
            except PreferenceError as error:
                raise PageError(404, f"{error}.") from None
        return RedirectResponse("/judge", status_code=303)

    # --- admin ------------------------------------------------------------------------

    def _require_admin(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            if not hmac.compare_digest(
                header.removeprefix("Bearer ").encode(), self.admin_token.encode()
            ):
                raise PageError(403, "The admin token is wrong.")
            return
        session = request.session
        expires = session.get("admin_until")
        if (
            session.get("admin") != self.admin_generation
            or not isinstance(expires, int | float)
            or expires < time.time()
        ):
            # A session from another admin token, an older release, or past its time.
            session.pop("admin", None)
            session.pop("admin_until", None)
            raise PageError(401, "The admin pages need the admin token: sign in at /admin.")

    def admin(self, request: Request):
        try:
            self._require_admin(request)
        except PageError as error:
            if error.status != 401:
                raise
            return self._render(request, "admin_login.html", status=401)
        return self._render(
            request, "admin.html", batches=self._overview(), csrf=request.session.get("csrf", "")
        )

    def _overview(self) -> list[dict]:
        with self._session() as session:
            batches = session.scalars(select(Batch).order_by(Batch.id.desc())).all()
            overview = []
            for batch in batches:
                votes = batch_votes(session, batch)
                overview.append(
                    {
                        "batch": batch,
                        "counts": choice_counts(session, batch),
                        "annotators": annotator_stats(session, batch),
                        "win_rates": [
                            analysis.win_rate(votes, a, b) for a, b in combinations(batch.models, 2)
                        ],
                    }
                )
            session.expunge_all()
            return overview

    def admin_login(self, request: Request, token: str = Form("")):
        self.login_limit.check(request)
        if not token:
            raise PageError(401, "Type the admin token to sign in.")
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise PageError(403, "The admin token is wrong.")
        request.session.update(
            admin=self.admin_generation,
            admin_until=int(time.time()) + ADMIN_SESSION_S,
            csrf=request.session.get("csrf") or secrets.token_urlsafe(24),
        )
        return RedirectResponse("/admin", status_code=303)

    def admin_logout(self, request: Request, csrf: str = Form("")):
        _check_csrf(request, csrf)
        request.session.pop("admin", None)
        request.session.pop("admin_until", None)
        return RedirectResponse("/admin", status_code=303)

    def admin_invite(
        self, request: Request, batch: str = Form(""), name: str = Form(""), csrf: str = Form("")
    ):
        self._require_admin(request)
        _check_csrf(request, csrf)
        name = name.strip()
        if not name or len(name) > 200:
            raise PageError(422, "Give the annotator a name of 1 to 200 characters.")
        with self._session() as session:
            found = session.scalar(select(Batch).where(Batch.name == batch))
            if found is None:
                raise PageError(404, f"There is no batch named {batch!r}.")
            token = invite(session, found, name)
        link = str(request.url_for("join", token=token))
        return self._render(request, "invited.html", person=name, batch=batch, link=link)

    def export(self, request: Request, batch_name: str, kind: str):
        self._require_admin(request)
        if kind not in ("csv", "jsonl"):
            raise PageError(404, f"Exports are .csv or .jsonl, not .{kind}.")
        with self._session() as session:
            batch = session.scalar(select(Batch).where(Batch.name == batch_name))
            if batch is None:
                raise PageError(404, f"There is no batch named {batch_name!r}.")
            records = vote_records(session, batch)
        headers = {"Content-Disposition": _attachment(f"{batch_name}-votes.{kind}")}
        if kind == "jsonl":
            body = "".join(json_line(r) for r in records)
            return Response(body, media_type="application/x-ndjson", headers=headers)
        return Response(_csv(records), media_type="text/csv", headers=headers)


def _attachment(filename: str) -> str:
    """A Content-Disposition for `filename` (RFC 6266): an ASCII stand-in with anything
    odd replaced, then the exact name percent-encoded as UTF-8 for clients that read it."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _check_csrf(request: Request, submitted: str) -> None:
    expected = request.session.get("csrf")
    if expected is None:
        raise PageError(401, "You are not signed in: open your invite link first.")
    if not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise PageError(403, "This form's session token does not match: reload the page.")


def _csv(records: list[dict]) -> str:
    out = io.StringIO()
    if records:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        for record in records:
            # A cell starting with = + - @ is a formula to a spreadsheet (after any
            # leading spaces, and in their full-width forms too): model text is untrusted,
            # so such cells get a leading apostrophe.
            writer.writerow({k: _no_formula(v) for k, v in record.items()})
    return out.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _no_formula(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value[:1] in ("\t", "\r", "\n") or value.lstrip()[:1] in _FORMULA_START:
        return "'" + value
    return value
