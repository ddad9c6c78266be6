"""The comparison store on SQLite: tokens, one vote per annotator and item, survival."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpt2lab.tasks.preferences.store import (
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


@pytest.fixture
def database(tmp_path):
    return f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"


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


def test_a_vote_submitted_twice_is_stored_once_and_survives_a_restart(database):
    engine = open_database(database)
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

    reopened = open_database(database)  # as after a server restart
    with Session(reopened) as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 1
        item = session.get(Item, item_id)
        assert (item.left.model, item.right.model) == ("tuned", "base")


def test_tokens_are_stored_hashed_and_wrong_ones_find_nobody(database):
    engine = open_database(database)
    with Session(engine) as session, session.begin():
        batch, _ = make_batch(session)
        token = invite(session, batch, "ben")
        (stored,) = session.scalars(select(Annotator.token_hash)).all()
        assert stored == hash_token(token) and token not in stored  # never the token itself
        assert annotator_for(session, token + "x") is None


def test_votes_outside_the_batch_or_the_choices_are_refused(database):
    engine = open_database(database)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        other, other_item = make_batch(session, "other")
        annotator = annotator_for(session, invite(session, batch, "cy"))
        with pytest.raises(PreferenceError, match=r"choice 'better' is not one of left, right"):
            record_vote(session, annotator, item.id, "better")
        with pytest.raises(PreferenceError, match=rf"item {other_item.id} is not part of"):
            record_vote(session, annotator, other_item.id, "left")


def test_simulated_votes_are_marked(database):
    engine = open_database(database)
    with Session(engine) as session, session.begin():
        batch, item = make_batch(session)
        judge = annotator_for(session, invite(session, batch, "judge", simulated=True))
        vote, _ = record_vote(session, judge, item.id, "tie")
        assert vote.simulated is True
