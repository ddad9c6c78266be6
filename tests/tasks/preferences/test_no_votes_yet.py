"""A batch with no votes yet says so in words: no "nan" on the admin page, in the summary
that `preferences report` prints, or in its win-rate table."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.preferences.store import Batch, open_database
from tasks.preferences.summary import summarise

from .conftest import ADMIN_TOKEN, make_comparisons
from .test_web import client_for, joined, vote


def _no_nan(text: str) -> bool:
    return re.search(r"\bnan\b", text, re.IGNORECASE) is None


def test_the_admin_page_says_no_votes_yet_instead_of_nan(tmp_path):
    comparisons = make_comparisons(f"sqlite:///{tmp_path / 'p.db'}")
    admin = client_for(comparisons.url)
    admin.post("/admin/login", data={"token": ADMIN_TOKEN})
    page = admin.get("/admin").text
    assert "no votes yet" in page and _no_nan(page)
    annotator = joined(client_for(comparisons.url), comparisons.tokens["ana"])
    for _ in range(3):
        assert vote(annotator, "left").status_code == 303
    page = admin.get("/admin").text
    assert _no_nan(page) and re.search(r"<td>[01]\.\d{3}</td>", page)  # a rate once voted


def test_the_summary_of_a_batch_without_votes_has_words_not_nan(tmp_path):
    comparisons = make_comparisons(f"sqlite:///{tmp_path / 'p.db'}")
    engine = open_database(comparisons.url)
    with Session(engine) as session:
        batch = session.scalar(select(Batch).where(Batch.name == comparisons.batch))
        text = summarise(session, batch).markdown()
    engine.dispose()
    assert _no_nan(text)
    assert "| no votes yet | – |" in text
    assert "No vote for a side yet" in text
    assert "no item judged by two annotators yet" in text
