"""The comparison page through FastAPI's TestClient: joining, voting, the admin pages and
every refusal (tokens, forged forms, bad items and choices, double votes, restarts)."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tasks.preferences.store import Item, Vote, open_database
from tasks.preferences.web import create_app

from .conftest import ADMIN_TOKEN, HOSTILE, make_comparisons


def client_for(url: str) -> TestClient:
    return TestClient(create_app(url, ADMIN_TOKEN), follow_redirects=False)


def joined(client: TestClient, token: str) -> TestClient:
    response = client.get(f"/join/{token}")
    assert response.status_code == 303 and response.headers["location"] == "/judge"
    return client


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the vote form, as a browser would send them."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


def vote(client: TestClient, choice: str = "left", **changes: str):
    fields = {**form_of(client.get("/judge").text), "choice": choice, **changes}
    return client.post("/vote", data=fields)


def count_votes(url: str) -> int:
    engine = open_database(url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(Vote))
    engine.dispose()
    return count


def test_an_invited_annotator_sees_a_blind_pair_and_votes(comparisons):
    client = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    page = client.get("/judge")
    assert page.status_code == 200
    assert "0 of 8 judged" in page.text  # 6 comparisons + 1 repeat + 1 gold item
    assert "base" not in page.text and "tuned" not in page.text  # model names hidden
    response = vote(client, "tie", comment="close call")
    assert response.status_code == 303 and response.headers["location"] == "/judge"
    assert "1 of 8 judged" in client.get("/judge").text
    assert count_votes(comparisons.url) == 1


def test_model_text_is_shown_as_text_never_as_html(comparisons):
    client = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    page = client.get("/judge")
    for _ in range(8):  # every item shows a hostile sample somewhere
        if "&lt;script&gt;" in page.text:
            break
        vote(client)
        page = client.get("/judge")
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in page.text
    assert HOSTILE not in page.text and "<b onmouseover" not in page.text
    # Defence in depth: inline scripts would not run even if something slipped through.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["referrer-policy"] == "no-referrer"


def test_no_session_or_a_wrong_invite_is_refused(comparisons):
    client = client_for(comparisons.url)
    assert client.get("/judge").status_code == 401
    assert client.get("/join").status_code == 401
    assert client.post("/vote", data={"item_id": "1", "choice": "left"}).status_code == 401
    refused = client.get("/join/not-a-real-token")
    assert refused.status_code == 403 and "not valid" in refused.text
    assert client.get("/judge").status_code == 401  # a bad link opens nothing


def test_a_forged_form_without_the_session_token_is_refused(comparisons):
    client = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    item = form_of(client.get("/judge").text)["item_id"]
    for csrf in ("", "guessed-token"):
        response = client.post("/vote", data={"item_id": item, "choice": "left", "csrf": csrf})
        assert response.status_code == 403 and "session token" in response.text
    # Another annotator's session token does not fit this session either.
    other = joined(client_for(comparisons.url), comparisons.tokens["bo"])
    their_csrf = form_of(other.get("/judge").text)["csrf"]
    response = client.post("/vote", data={"item_id": item, "choice": "left", "csrf": their_csrf})
    assert response.status_code == 403
    assert count_votes(comparisons.url) == 0


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({"choice": "center"}, 422, "choice 'center' is not one of: left, right, tie, both_bad"),
        ({"choice": ""}, 422, "choice '' is not one of"),
        ({"item_id": "99999"}, 404, "item 99999 is not part of this annotator's batch"),
        ({"item_id": "abc"}, 400, "item_id 'abc' is not an item number"),
    ],
)
def test_a_bad_item_or_choice_gets_a_clear_4xx(comparisons, changes, status, message):
    client = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    response = vote(client, **changes)
    assert response.status_code == status
    assert message in html.unescape(response.text)
    fields = {**form_of(client.get("/judge").text), "choice": "left", **changes}
    as_json = client.post("/vote", data=fields, headers={"accept": "application/json"})
    assert as_json.status_code == status and message in as_json.json()["error"]
    assert count_votes(comparisons.url) == 0


def test_an_item_of_another_batch_is_refused(database_url):
    url = database_url
    first = make_comparisons(url, name="first")
    make_comparisons(url, name="second")
    engine = open_database(url)
    with Session(engine) as session:
        foreign = session.scalars(select(Item.id).order_by(Item.id.desc())).first()
    client = joined(client_for(url), first.tokens["ana"])
    response = vote(client, item_id=str(foreign))
    assert response.status_code == 404
    assert "not part of this annotator's batch" in html.unescape(response.text)


def test_the_same_vote_twice_is_stored_once_and_a_restart_keeps_votes_and_sessions(comparisons):
    client = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    fields = {**form_of(client.get("/judge").text), "choice": "right"}
    assert client.post("/vote", data=fields).status_code == 303
    assert client.post("/vote", data={**fields, "choice": "left"}).status_code == 303
    assert count_votes(comparisons.url) == 1

    restarted = client_for(comparisons.url)  # a new app on the same database
    restarted.cookies = client.cookies  # the same browser
    assert "1 of 8 judged" in restarted.get("/judge").text
    assert vote(restarted, "tie").status_code == 303
    assert count_votes(comparisons.url) == 2


def test_admin_pages_need_the_admin_token(comparisons):
    client = client_for(comparisons.url)
    assert client.get("/admin").status_code == 401
    assert client.get(f"/admin/export/{comparisons.batch}.csv").status_code == 401
    wrong = {"authorization": "Bearer wrong-token"}
    assert client.get(f"/admin/export/{comparisons.batch}.csv", headers=wrong).status_code == 403
    assert client.post("/admin/login", data={"token": "wrong"}).status_code == 403
    assert client.get("/admin").status_code == 401
    # An annotator's session is not an admin session.
    annotator = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    assert annotator.get("/admin").status_code == 401


def test_the_admin_sees_live_counts_and_annotators_and_exports_votes(comparisons):
    ana = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    for _ in range(8):
        vote(ana, "left", comment='=HYPERLINK("http://x")')
    admin = client_for(comparisons.url)
    assert admin.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 303
    page = admin.get("/admin").text
    assert "human comparison</td><td>6" in page and "human gold</td><td>1" in page
    assert re.search(r"<td>ana</td><td>no</td><td>8</td>", page)
    assert "&lt;script&gt;" not in page  # the admin page shows no model text at all

    export = admin.get(f"/admin/export/{comparisons.batch}.jsonl")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert len(rows) == 8 and {r["annotator"] for r in rows} == {"ana"}
    assert {"prompt", "left_text", "right_text", "left_model", "choice"} <= rows[0].keys()
    csv_text = admin.get(f"/admin/export/{comparisons.batch}.csv").text
    assert "'=HYPERLINK" in csv_text  # no spreadsheet formula from a comment
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (
        client_for(comparisons.url)
        .get(f"/admin/export/{comparisons.batch}.csv", headers=bearer)
        .text
        == csv_text
    )
    assert admin.get("/admin/export/no-such-batch.csv").status_code == 404


def test_the_admin_invites_an_annotator_whose_link_works(comparisons):
    admin = client_for(comparisons.url)
    admin.post("/admin/login", data={"token": ADMIN_TOKEN})
    csrf = form_of(admin.get("/admin").text)["csrf"]
    page = admin.post(
        "/admin/invite", data={"batch": comparisons.batch, "name": "cy", "csrf": csrf}
    )
    assert page.status_code == 200
    link = re.search(r'<code id="invite-link">([^<]+)</code>', page.text).group(1)
    newcomer = client_for(comparisons.url)
    assert newcomer.get(link.removeprefix("http://testserver")).status_code == 303
    assert "0 of 8 judged" in newcomer.get("/judge").text
    forged = admin.post("/admin/invite", data={"batch": comparisons.batch, "name": "x"})
    assert forged.status_code == 403
    too_long = admin.post(
        "/admin/invite", data={"batch": comparisons.batch, "name": "n" * 201, "csrf": csrf}
    )
    assert too_long.status_code == 422 and "1 to 200 characters" in too_long.text


def test_nobody_can_sign_in_as_the_simulated_judge(comparisons):
    from tasks.preferences.judge import simulated_judge
    from tasks.preferences.store import Annotator, Batch, hash_token

    engine = open_database(comparisons.url)
    with Session(engine) as session, session.begin():
        batch = session.scalar(select(Batch).where(Batch.name == comparisons.batch))
        judge = simulated_judge(session, batch)
        # Even with its token known (here: planted), the page refuses a simulated annotator.
        session.get(Annotator, judge.id).token_hash = hash_token("planted-token")
    engine.dispose()
    client = client_for(comparisons.url)
    assert client.get("/join/planted-token").status_code == 403
    assert client.get("/judge").status_code == 401
