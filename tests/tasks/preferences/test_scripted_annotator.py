"""The scripted annotator votes through the real page (uvicorn on loopback) as a person
would, reads the texts exactly as they were sampled, and makes mistakes at the rate asked."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.preferences.batches import batch_votes
from tasks.preferences.scripted_annotator import (
    SCRIPTED_VADER,
    Screen,
    choose,
    judge_on_page,
)
from tasks.preferences.sentiment import positivity
from tasks.preferences.store import Annotator, Batch, Sample, open_database
from tasks.preferences.web import create_app

from .conftest import ADMIN_TOKEN, HOSTILE, make_comparisons


@contextmanager
def page_on_loopback(database_url: str) -> Iterator[str]:
    """The comparison page served by a real uvicorn server on a free loopback port."""
    app = create_app(database_url, ADMIN_TOKEN, https_only=False, allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the page did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def batch(tmp_path, monkeypatch):
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    url = f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"
    return make_comparisons(url, prompts=8, annotators=(SCRIPTED_VADER,))


def test_it_votes_on_every_item_through_the_page_for_the_higher_score(batch):
    tags = lambda text: -text.count("<")  # noqa: E731 - the tuned model writes no HTML
    with page_on_loopback(batch.url) as url:
        tally = judge_on_page(url, batch.tokens[SCRIPTED_VADER], tags)
    engine = open_database(batch.url)
    with Session(engine) as session:
        found = session.scalar(select(Batch).where(Batch.name == batch.batch))
        votes = batch_votes(session, found)
        samples = {s.id: s for s in session.scalars(select(Sample))}
        annotator = session.scalar(select(Annotator).where(Annotator.name == SCRIPTED_VADER))
        count = len(found.items)
        model_items = [i for i in found.items if i.gold_choice is None and i.repeat_of is None]
        # The page escapes the hostile sample; the annotator read back exactly what was
        # sampled, or it could not have told the two apart.
        shown = {samples[i.left_id].text for i in model_items}
    engine.dispose()
    assert tally.votes == count and tally.mistakes == 0
    assert any(HOSTILE in text for text in shown)
    assert len(votes) == len(model_items)
    assert {v.annotator for v in votes} == {annotator.name} == {SCRIPTED_VADER}
    winners = [v.left_model if v.choice == "left" else v.right_model for v in votes]
    assert winners == ["tuned"] * len(votes), [v.choice for v in votes]


def test_mistakes_come_at_the_rate_asked_and_the_same_seed_makes_the_same_ones():
    screen = Screen("1", "csrf", "A day out.", "It was wonderful.", "It was awful.")
    runs = []
    for seed in (7, 7):
        rng = random.Random(seed)
        runs.append([choose(screen, positivity, 0.3, rng) for _ in range(2000)])
    assert runs[0] == runs[1]
    mistakes = sum(mistake for _, mistake in runs[0])
    assert 0.25 < mistakes / 2000 < 0.35
    # A mistake is a coin flip: about half of them still pick the more positive side.
    right_by_luck = sum(choice == "left" for choice, mistake in runs[0] if mistake)
    assert 0.35 < right_by_luck / mistakes < 0.65
    assert all(choice == "left" for choice, mistake in runs[0] if not mistake)


def test_equal_scores_are_a_tie():
    screen = Screen("1", "csrf", "A day out.", "The door was wooden.", "A man walked past.")
    assert choose(screen, positivity, 0.0, random.Random(0)) == ("tie", False)


def test_vader_reads_positive_and_negative_prose():
    assert positivity("It was a beautiful, peaceful moment, and she loved it.") > 0.5
    assert positivity("The noise was terrible and the people were miserable.") < -0.5
    assert positivity("The clock on the wall showed a quarter past ten.") == 0.0
