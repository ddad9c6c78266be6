"""The comparison store, on SQLite and PostgreSQL: tokens, one vote per annotator and
item (even when the same vote arrives twice at once), survival across restarts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from tasks.preferences.store import (
    Annotator,
    Batch,
    Item,
    PreferenceError,
    Sample,
    Vote,
    annotator_for,
    hash_token,
    invite,
    open_database,
    record_vote,
)

from .conftest import make_comparisons


def make_batch(session: Session, name: str = "base-vs-tuned") -> tuple[Batch, Item]:
    batch = Batch(name=name, models=["base", "tuned"], settings={"top_k": 40})
    session.add(batch)
    session.flush()
    a = Sample(batch_id=batch.id, prompt="Once", model="base", text="<script>x</script>", seed=1)
    b = Sample(batch_id=batch.id, prompt="Once", model="tuned", text="upon a time", seed=1)
    session.add_all([a, b])
    session.flush()
    item = Item(batch_id=batch.id, prompt="Once", left_id=b.id, right_id=a.id)
    session.add(item)
    session.flush()
    return batch, item


def test_a_vote_submitted_twice_is_stored_once_and_survives_a_restart(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        token = invite(session, batch, "ana")
        item_id = item.id
    with Session(engine) as session, session.begin():
        annotator = annotator_for(session, token)
        assert annotator is not None and annotator.name == "ana"
        assert record_vote(session, annotator, item_id, "left")[1] is True
        again, new = record_vote(session, annotator, item_id, "right")  # a double submit
        assert new is False and again.choice == "left"
    engine.dispose()

    reopened = open_database(database_url)  # as after a server restart
    with Session(reopened) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 1
        item = session.get(Item, item_id)
        assert (item.left.model, item.right.model) == ("tuned", "base")


def test_tokens_are_stored_hashed_and_wrong_ones_find_nobody(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch, _ = make_batch(session)
        token = invite(session, batch, "ben")
        (stored,) = session.scalars(select(Annotator.token_hash)).all()
        assert stored == hash_token(token) and token not in stored  # never the token itself
        assert annotator_for(session, token + "x") is None


def test_votes_outside_the_batch_or_the_choices_are_refused(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        other, other_item = make_batch(session, "other")
        annotator = annotator_for(session, invite(session, batch, "cy"))
        with pytest.raises(PreferenceError, match=r"choice 'better' is not one of left, right"):
            record_vote(session, annotator, item.id, "better")
        with pytest.raises(PreferenceError, match=rf"item {other_item.id} is not part of"):
            record_vote(session, annotator, other_item.id, "left")


def test_simulated_votes_are_marked(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        judge = annotator_for(session, invite(session, batch, "judge", simulated=True))
        vote, _ = record_vote(session, judge, item.id, "tie")
        assert vote.simulated is True


def test_moments_come_back_as_the_moment_stored_in_utc(database_url, monkeypatch):
    """SQLite keeps no time zone and PostgreSQL answers in the session's own (New York's
    here, through libpq's PGTZ); both must give back the moment stored, in UTC, which is
    how the admin page shows deadlines and last votes."""
    monkeypatch.setenv("PGTZ", "America/New_York")
    deadline = datetime(2030, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        batch.deadline = deadline
        record_vote(session, annotator_for(session, invite(session, batch, "ana")), item.id, "tie")
    with Session(engine) as session:
        stored = session.scalars(select(Batch.deadline)).one()
        assert stored == deadline and stored.tzinfo == UTC and stored.hour == 10
        voted_at = session.scalars(select(Vote.created_at)).one()
        assert voted_at.tzinfo == UTC and abs(datetime.now(UTC) - voted_at) < timedelta(hours=1)
        # A naive moment is taken to be UTC, whatever the session's time zone.
        session.execute(update(Batch).values(deadline=datetime(2030, 5, 1, 12, 0)))
        assert session.scalars(select(Batch.deadline)).one() == datetime(2030, 5, 1, 12, tzinfo=UTC)


def test_the_same_vote_from_two_threads_at_once_is_stored_once(database_url):
    """A double click sends the same vote twice at once; each request has its own session.

    On SQLite the write lock taken at BEGIN lets one transaction in at a time, so the
    second finds the first's vote. On PostgreSQL both can find no vote and both INSERT:
    each INSERT is held back here until the other thread reaches its own, so the unique
    constraint and `record_vote`'s savepoint must settle it (the first commit wins)."""
    setup = make_comparisons(database_url, annotators=("ana",))
    engine = open_database(database_url)
    with Session(engine) as session:
        item_id = session.scalars(select(Item.id).order_by(Item.id)).first()
    racing = database_url.startswith("postgresql")
    both_inserting = threading.Barrier(2, timeout=10)
    inserts = []
    if racing:

        @event.listens_for(engine, "before_cursor_execute")
        def hold_insert(_conn, _cursor, statement, *_args) -> None:
            if statement.startswith("INSERT INTO votes"):
                inserts.append(statement)
                both_inserting.wait()

    both_started = threading.Barrier(2, timeout=10)

    def submit(choice: str) -> tuple[str, bool]:
        both_started.wait()
        with Session(engine) as session, session.begin():
            annotator = annotator_for(session, setup.tokens["ana"])
            vote, new = record_vote(session, annotator, item_id, choice)
            return vote.choice, new

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(submit, ["left", "right"]))
    with Session(engine) as session:
        stored = session.scalars(select(Vote.choice)).all()
    assert len(stored) == 1
    assert sorted(new for _, new in results) == [False, True]
    assert {choice for choice, _ in results} == set(stored)  # both answer with the stored one
    if racing:
        assert len(inserts) == 2  # the race really happened: the constraint decided it


def test_a_database_other_than_sqlite_or_postgresql_is_refused_in_one_line():
    with pytest.raises(PreferenceError, match="database 'mysql' is not supported: use sqlite"):
        open_database("mysql+pymysql://user:secret@127.0.0.1/prefs")
