"""The comparison page against someone who holds a copy of its database, an old admin
cookie, odd item numbers, huge bodies, forged hosts, scripts that guess tokens, and
model text made to break spreadsheets and JSON-lines readers."""

from __future__ import annotations

import base64
import csv
import io
import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from tasks.preferences import web
from tasks.preferences.store import WebSecret, open_database
from tasks.preferences.web import create_app

from .conftest import ADMIN_TOKEN, make_comparisons
from .test_web import client_for, form_of, joined, vote

OTHER_TOKEN = "another-admin-token-0123456789abcdef"


@pytest.fixture
def sqlite_comparisons(tmp_path):
    return make_comparisons(f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}")


def _forged_cookie(key: str, data: dict) -> str:
    """A session cookie as Starlette's SessionMiddleware signs it."""
    payload = base64.b64encode(json.dumps(data).encode())
    return TimestampSigner(key).sign(payload).decode()


def _signed_in_admin(url: str, token: str = ADMIN_TOKEN) -> TestClient:
    admin = TestClient(create_app(url, token), follow_redirects=False)
    assert admin.post("/admin/login", data={"token": token}).status_code == 303
    assert admin.get("/admin").status_code == 200
    return admin


# --- A: a copy of the database does not give access ----------------------------------


def test_nothing_in_the_database_signs_an_admin_cookie(sqlite_comparisons, tmp_path):
    url = sqlite_comparisons.url
    client = client_for(url)
    real = _signed_in_admin(url)
    real_session = json.loads(base64.b64decode(real.cookies["gpt2lab"].split(".")[0]))
    engine = open_database(url)
    with Session(engine) as session:
        secrets_in_db = [row.value for row in session.scalars(select(WebSecret))]
    engine.dispose()
    assert secrets_in_db  # the database half exists; alone it must sign nothing
    for key in secrets_in_db:
        for data in ({"admin": True}, real_session):  # old form, and a stolen-shape one
            client.cookies.set("gpt2lab", _forged_cookie(key, data))
            assert client.get("/admin").status_code == 401
            assert client.get(f"/admin/export/{sqlite_comparisons.batch}.csv").status_code == 401


def test_the_database_and_its_secret_are_readable_by_their_owner_only(sqlite_comparisons):
    client = joined(client_for(sqlite_comparisons.url), sqlite_comparisons.tokens["ana"])
    assert vote(client).status_code == 303  # the write-ahead log exists now
    folder = Path(sqlite_comparisons.url.removeprefix("sqlite:///")).parent
    files = [p for p in folder.iterdir() if p.name.startswith("preferences.db")]
    names = {p.name for p in files}
    assert {"preferences.db", "preferences.db-wal", "preferences.db.secret"} <= names
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


# --- B: admin sessions end with the token, a logout, or the clock ----------------------


def test_a_new_admin_token_ends_old_admin_sessions(database_url):
    comparisons = make_comparisons(database_url)
    old = _signed_in_admin(comparisons.url)
    restarted = TestClient(create_app(comparisons.url, OTHER_TOKEN), follow_redirects=False)
    restarted.cookies = old.cookies  # the same browser, after a restart with a new token
    assert restarted.get("/admin").status_code == 401
    assert _signed_in_admin(comparisons.url, OTHER_TOKEN).get("/admin").status_code == 200


def test_an_admin_signs_out_with_the_forms_token(sqlite_comparisons):
    admin = _signed_in_admin(sqlite_comparisons.url)
    csrf = form_of(admin.get("/admin").text)["csrf"]
    assert admin.post("/admin/logout", data={"csrf": "forged"}).status_code == 403
    assert admin.get("/admin").status_code == 200  # a forged logout changed nothing
    assert admin.post("/admin/logout", data={"csrf": csrf}).status_code == 303
    assert admin.get("/admin").status_code == 401


def test_an_admin_session_lasts_hours_not_weeks(sqlite_comparisons, monkeypatch):
    admin = _signed_in_admin(sqlite_comparisons.url)
    now = web.time.time()
    monkeypatch.setattr(web.time, "time", lambda: now + 11 * 3600)
    assert admin.get("/admin").status_code == 200
    monkeypatch.setattr(web.time, "time", lambda: now + 13 * 3600)
    assert admin.get("/admin").status_code == 401


# --- D: strict item numbers; security headers on a crash too --------------------------


@pytest.mark.parametrize(
    "item_id", ["9999999999999999999", "\u00b2", "\u0663", "\uff11", "1" * 5000, "+1", " 1"]
)
def test_an_item_id_that_is_not_a_plain_number_is_a_400(sqlite_comparisons, item_id):
    client = joined(client_for(sqlite_comparisons.url), sqlite_comparisons.tokens["ana"])
    response = vote(client, item_id=item_id)
    assert response.status_code == 400 and "is not an item number" in response.text


def test_a_crash_still_carries_the_security_headers(sqlite_comparisons, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(web, "next_item", broken)
    app = create_app(sqlite_comparisons.url, ADMIN_TOKEN)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    joined(client, sqlite_comparisons.tokens["ana"])
    response = client.get("/judge")
    assert response.status_code == 500
    for name, value in web.SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_a_database_away_is_try_again_later_with_the_headers(sqlite_comparisons, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def away(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(web, "next_item", away)
    app = create_app(sqlite_comparisons.url, ADMIN_TOKEN)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    joined(client, sqlite_comparisons.tokens["ana"])
    response = client.get("/judge")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    for name, value in web.SECURITY_HEADERS.items():
        assert response.headers[name] == value


# --- E: a body limit before any parsing or session work -------------------------------


def test_a_large_body_is_refused_before_the_form_is_read(sqlite_comparisons, monkeypatch):
    forms_read = []
    real_form = Request.form

    def counting_form(self, *args, **kwargs):
        forms_read.append(self.url.path)
        return real_form(self, *args, **kwargs)

    monkeypatch.setattr(Request, "form", counting_form)
    client = client_for(sqlite_comparisons.url)  # no cookie: no session at all
    big = {"comment": ("big.txt", b"x" * (2 * web.MAX_BODY_BYTES), "text/plain")}
    declared = client.post("/vote", data={"item_id": "1"}, files=big)
    assert declared.status_code == 413 and "over the limit" in declared.text
    assert forms_read == []  # refused on its Content-Length: not a byte was parsed

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(10):
            yield b"comment=" + b"y" * (web.MAX_BODY_BYTES // 4)

    streamed = client.post(
        "/vote",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert streamed.headers["x-content-type-options"] == "nosniff"
    # A normal vote still goes through.
    voter = joined(client_for(sqlite_comparisons.url), sqlite_comparisons.tokens["ana"])
    assert vote(voter, comment="fine").status_code == 303


# --- C and the rest --------------------------------------------------------------------


def test_https_only_marks_the_cookie_secure_and_is_the_default_off_loopback(
    sqlite_comparisons,
):
    app = create_app(sqlite_comparisons.url, ADMIN_TOKEN, https_only=True)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    response = client.get(f"/join/{sqlite_comparisons.tokens['ana']}")
    assert "secure" in response.headers["set-cookie"].lower()
    from pipelines.comparison_server import exposure_warning, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert exposure_warning("127.0.0.1") is None
    assert "TLS proxy" in exposure_warning("0.0.0.0")


def test_only_the_allowed_hosts_are_answered(sqlite_comparisons):
    app = create_app(sqlite_comparisons.url, ADMIN_TOKEN, allowed_hosts=["votes.example"])
    assert TestClient(app).get("/health").status_code == 400  # Host: testserver
    allowed = TestClient(app, base_url="http://votes.example")
    assert allowed.get("/health").status_code == 200


def test_guessing_the_admin_token_is_rate_limited(sqlite_comparisons):
    client = client_for(sqlite_comparisons.url)
    burst, _ = web.ADMIN_LOGIN_RATE
    answers = [
        client.post("/admin/login", data={"token": "guess"}).status_code for _ in range(burst + 1)
    ]
    assert answers[:burst] == [403] * burst and answers[-1] == 429
    # The right token is refused too while the limit holds: guessing gains nothing.
    assert client.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 429


def test_invite_links_are_rate_limited_per_client(sqlite_comparisons, monkeypatch):
    monkeypatch.setattr(web, "JOIN_RATE", (3, 60.0))
    client = client_for(sqlite_comparisons.url)
    answers = [client.get("/join/not-a-token").status_code for _ in range(4)]
    assert answers == [403, 403, 403, 429]


def test_a_short_admin_token_is_refused(sqlite_comparisons):
    with pytest.raises(ValueError, match="at least 32 characters"):
        create_app(sqlite_comparisons.url, "sixteen-chars-xx")


def test_exports_survive_odd_names_line_separators_and_disguised_formulas(tmp_path):
    comparisons = make_comparisons(
        f"sqlite:///{(tmp_path / 'p.db').as_posix()}", name="b\u00e4tch \u2713"
    )
    ana = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    comments = ["one\u2028two\u2029three", "\uff1dSUM(A1)", "\uff0b1", "\uff20x", "\uff0d1"]
    for comment in comments:
        assert vote(ana, comment=comment).status_code == 303
    admin = _signed_in_admin(comparisons.url)
    export = admin.get("/admin/export/b%C3%A4tch%20%E2%9C%93.jsonl")
    assert export.status_code == 200
    disposition = export.headers["content-disposition"]
    assert disposition.isascii()
    assert "filename*=UTF-8''b%C3%A4tch%20%E2%9C%93-votes.jsonl" in disposition
    lines = export.text.splitlines()
    assert len(lines) == len(comments)
    assert {json.loads(line)["comment"] for line in lines} == set(comments)
    table = admin.get("/admin/export/b%C3%A4tch%20%E2%9C%93.csv").text
    cells = {row["comment"] for row in csv.DictReader(io.StringIO(table))}
    for comment in comments[1:]:
        assert "'" + comment in cells
    # Comments are stripped when stored; other text (prompts, model output) is not.
    for text in (" =1+1", "  @SUM(A1)", "\u3000=1", "\n=1"):
        assert web._no_formula(text) == "'" + text
    assert web._no_formula("a = b") == "a = b"


def test_a_short_admin_token_from_the_environment_is_one_line(monkeypatch):
    from model.errors import Gpt2labError
    from pipelines.comparison_server import ADMIN_TOKEN_ENV, admin_token

    monkeypatch.setenv(ADMIN_TOKEN_ENV, "sixteen-chars-xx")
    with pytest.raises(Gpt2labError, match=r"GPT2LAB_ADMIN_TOKEN has 16 characters"):
        admin_token()
    monkeypatch.setenv(ADMIN_TOKEN_ENV, OTHER_TOKEN)
    assert admin_token() == OTHER_TOKEN


def test_serving_off_loopback_defaults_to_secure_cookies_and_no_proxy_trust(
    sqlite_comparisons, monkeypatch
):
    import uvicorn

    from pipelines import comparison_server

    monkeypatch.setenv(comparison_server.ADMIN_TOKEN_ENV, OTHER_TOKEN)
    seen: list[dict] = []

    def fake_run(app, **options):
        cookie = TestClient(app, base_url="https://votes.example").get(
            f"/join/{sqlite_comparisons.tokens['ana']}", follow_redirects=False
        )
        cookie_header = cookie.headers.get("set-cookie", "").lower()
        seen.append({**options, "cookie": cookie_header, "status": cookie.status_code})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    comparison_server.serve(sqlite_comparisons.url, "0.0.0.0", 8765)
    comparison_server.serve(sqlite_comparisons.url, "0.0.0.0", 8765, trusted_proxies=["10.0.0.2"])
    comparison_server.serve(sqlite_comparisons.url, "127.0.0.1", 8765)
    public, proxied, local = seen
    assert "secure" in public["cookie"] and public["proxy_headers"] is False
    assert proxied["proxy_headers"] is True and proxied["forwarded_allow_ips"] == "10.0.0.2"
    # On loopback only the loopback names are answered: a request for votes.example is
    # refused before it starts a session.
    assert local["status"] == 400 and local["cookie"] == ""
