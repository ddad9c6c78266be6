"""The comparison page: annotators judge two continuations blind; an admin watches.

A small FastAPI app that renders plain HTML on the server (no JavaScript framework; a
few lines of script add keyboard shortcuts, and the page works without them).

    GET  /join/<token>   an invite link: starts the annotator's session, then -> /judge
    GET  /judge          the next item: the prompt and two continuations, sides as recorded
    POST /vote           item_id, choice (left/right/tie/both_bad), comment, csrf
    GET  /admin          live counts, per-annotator quality, win rates (admin token)
    POST /admin/login    the admin token, typed once; POST /admin/invite adds an annotator
    GET  /admin/export/<batch>.csv|.jsonl   every vote with what was shown
    GET  /health         for the flow that starts or reuses the page

What keeps it safe:
- Model text is untrusted: Jinja escapes everything it renders, and the Content
  Security Policy refuses inline scripts, so even a `<script>` that slipped through
  would not run.
- Invite tokens are stored hashed; the token leaves the address bar at once (the join
  link redirects) and no page sends a Referer.
- Sessions live in a signed cookie (the key is kept in the database, so a restarted
  server still knows everyone). Every form carries the session's own random token, so
  another site cannot make a logged-in browser vote (cross-site request forgery).
- A missing session or admin token is 401, a wrong one 403; a bad item or choice is a
  4xx with a one-line message.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.preferences import analysis
from tasks.preferences.batches import (
    annotator_stats,
    batch_votes,
    choice_counts,
    next_item,
    vote_records,
)
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


class PageError(Exception):
    """Ends a request with `status` and a one-line message shown to the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(database_url: str, admin_token: str, *, https_only: bool = False) -> FastAPI:
    """The page for the batches in `database_url`; `admin_token` opens the admin pages."""
    if len(admin_token) < 16:
        raise ValueError("the admin token must be at least 16 characters long")
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        cookie_key = web_secret(session)
    app = FastAPI(title="gpt2lab comparisons", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=cookie_key,
        session_cookie="gpt2lab",
        same_site="lax",
        https_only=https_only,
        max_age=30 * 24 * 3600,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
    pages = _Pages(engine, templates, admin_token)
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
    app.post("/admin/invite", response_class=HTMLResponse)(pages.admin_invite)
    app.get("/admin/export/{batch_name}.{kind}")(pages.export)
    app.state.engine = engine
    return app


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set them itself.

    A plain ASGI middleware, not `@app.middleware("http")`: that one runs each response
    through an extra task and stream, which cost about a sixth of the server's CPU per
    request under load (benchmarks/bench_comparison_page.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Pages:
    """The request handlers, sharing the database engine and the templates."""

    def __init__(self, engine: Engine, templates: Jinja2Templates, admin_token: str) -> None:
        self.engine = engine
        self.templates = templates
        self.admin_token = admin_token
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
        if not item_id.isdigit():
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
        if request.session.get("admin") is not True:
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
        if not token:
            raise PageError(401, "Type the admin token to sign in.")
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise PageError(403, "The admin token is wrong.")
        request.session.update(
            admin=True, csrf=request.session.get("csrf") or secrets.token_urlsafe(24)
        )
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
        filename = f"{batch_name}-votes.{kind}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if kind == "jsonl":
            body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return Response(body, media_type="application/x-ndjson", headers=headers)
        return Response(_csv(records), media_type="text/csv", headers=headers)


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
            # A cell starting with = + - @ is a formula to a spreadsheet: model text is
            # untrusted, so such cells get a leading apostrophe.
            writer.writerow({k: _no_formula(v) for k, v in record.items()})
    return out.getvalue()


def _no_formula(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
