"""Reading the training data of preference tuning: a batch's votes or a JSON-lines file,
with bad input refused in one line that says what is wrong and where."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.preferences.judge import simulated_judge
from tasks.preferences.store import (
    Batch,
    Item,
    PreferenceError,
    annotator_for,
    open_database,
    record_vote,
)
from tasks.tuning.comparisons import (
    Comparison,
    comparisons_from_batch,
    read_comparisons,
    split_by_prompt,
)
from tests.tasks.preferences.conftest import make_comparisons


@pytest.fixture
def batch(tmp_path):
    """Six prompts, base vs tuned; no gold items or repeats unless a test votes on them."""
    return make_comparisons(f"sqlite:///{tmp_path / 'votes.db'}")


def vote(batch, person: str | None, choices: dict[int, str]) -> None:
    """`person` (None: the simulated judge) votes choices[n] on the batch's n-th item."""
    engine = open_database(batch.url)
    with Session(engine) as session, session.begin():
        row = session.scalar(select(Batch).where(Batch.name == batch.batch))
        items = session.scalars(select(Item).where(Item.batch_id == row.id).order_by(Item.id))
        items = [i for i in items if i.gold_choice is None and i.repeat_of is None]
        judge = (
            simulated_judge(session, row)
            if person is None
            else annotator_for(session, batch.tokens[person])
        )
        for index, choice in choices.items():
            record_vote(session, judge, items[index].id, choice)
    engine.dispose()


def load(batch, **options):
    engine = open_database(batch.url)
    with Session(engine) as session:
        return comparisons_from_batch(session, batch.batch, **options)


def test_decided_human_votes_become_comparisons(batch):
    vote(batch, "ana", {0: "left", 1: "right", 2: "tie", 3: "both_bad"})
    vote(batch, None, {4: "left"})  # the simulated judge's: never mixed in
    loaded = load(batch)
    assert (loaded.judge, loaded.votes, len(loaded.comparisons)) == ("people", 4, 2)
    assert loaded.models == ["base", "tuned"] and len(loaded.prompts) == 6
    for comparison in loaded.comparisons:
        chosen, rejected = comparison.pairs()[0]
        assert chosen == comparison.samples[comparison.best] != rejected

    before = loaded.fingerprint
    vote(batch, "bo", {0: "right"})
    assert load(batch).fingerprint != before  # new votes, new lineage


def test_a_batch_with_no_votes_is_refused(batch):
    with pytest.raises(PreferenceError, match="'base-vs-tuned' has no votes .* yet"):
        load(batch)


def test_only_simulated_votes_need_the_explicit_switch(batch):
    vote(batch, None, {0: "left", 1: "right"})
    with pytest.raises(PreferenceError, match=r"only simulated votes \(2\).*--allow-simulated"):
        load(batch)
    allowed = load(batch, allow_simulated=True)
    assert (allowed.judge, len(allowed.comparisons)) == ("simulated", 2)


def test_human_votes_win_over_simulated_ones_even_when_allowed(batch):
    vote(batch, None, {0: "left", 1: "right", 2: "left"})
    vote(batch, "ana", {0: "right"})
    loaded = load(batch, allow_simulated=True)
    assert (loaded.judge, len(loaded.comparisons)) == ("people", 1)


def test_votes_that_never_pick_a_side_are_refused(batch):
    vote(batch, "ana", {0: "tie", 1: "both_bad"})
    with pytest.raises(PreferenceError, match="2 people votes are all ties or 'both bad'"):
        load(batch)


def test_a_vote_whose_sample_is_missing_is_named(batch, tmp_path):
    vote(batch, "ana", {0: "left", 1: "right"})
    # A damaged or hand-edited database: delete a voted-on sample behind the store's back
    # (plain sqlite3 does not enforce foreign keys unless asked).
    with sqlite3.connect(tmp_path / "votes.db") as raw:
        item_id, sample_id = raw.execute(
            "SELECT items.id, items.right_id FROM votes JOIN items ON votes.item_id = items.id "
            "ORDER BY votes.id DESC LIMIT 1"
        ).fetchone()
        raw.execute("DELETE FROM samples WHERE id = ?", (sample_id,))
    with pytest.raises(PreferenceError) as error:
        load(batch)
    assert f"(item {item_id}) refers to the right sample {sample_id}, which is missing" in str(
        error.value
    )


def test_an_unknown_batch_is_named(batch):
    with pytest.raises(PreferenceError, match="no batch named 'nope'"):
        engine = open_database(batch.url)
        with Session(engine) as session:
            comparisons_from_batch(session, "nope")


def test_comparisons_file_reads_pairs_and_best_of_4(tmp_path):
    path = tmp_path / "comparisons.jsonl"
    rows = [
        {"prompt": "P", "chosen": "good", "rejected": "bad"},
        {"prompt": "Q", "samples": ["a", "b", "c", "d"], "best": 2},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    pair, four = read_comparisons(path)
    assert (pair.samples, pair.best) == (("good", "bad"), 0)
    assert four.pairs() == [("c", "a"), ("c", "b"), ("c", "d")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"prompt": "P", "chosen": "x"}', "field 'rejected' is missing"),
        ('{"prompt": 3, "chosen": "x", "rejected": "y"}', "field 'prompt' is int, not text"),
        ('{"prompt": "P", "samples": ["a"], "best": 0}', "'samples' must be a list of 2 or more"),
        ('{"prompt": "P", "samples": ["a", "b"], "best": 2}', "'best' must be a sample's index"),
        ('{"prompt": "P", "samples": ["a", 5], "best": 0}', "field 'samples[1]' is int"),
    ],
)
def test_a_bad_comparisons_line_is_named(tmp_path, line, message):
    path = tmp_path / "comparisons.jsonl"
    path.write_text('{"prompt": "P", "chosen": "x", "rejected": "y"}\n' + line + "\n")
    with pytest.raises(PreferenceError, match=f"^{re.escape(str(path))}:2: .*{re.escape(message)}"):
        read_comparisons(path)


def test_held_out_prompts_are_never_trained_on():
    comparisons = [Comparison(f"prompt {i % 10}", ("a", "b"), i % 2) for i in range(40)]
    split = split_by_prompt(comparisons, 0.2, seed=1)
    held_out = {c.prompt for c in split.held_out}
    assert len(held_out) == 2 and not held_out & {c.prompt for c in split.train}
    assert len(split.train) + len(split.held_out) == 40
    assert split_by_prompt(comparisons, 0.2, seed=1) == split  # the same split every run
    with pytest.raises(PreferenceError, match="cover 1 prompt: at least 2 are needed"):
        split_by_prompt(comparisons[:1], 0.2, seed=0)
