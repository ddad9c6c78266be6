"""Comparison batches: same seed per prompt, sides drawn and recorded, repeats swapped,
and simulated votes kept apart from human ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.preferences.analysis import win_rate
from tasks.preferences.batches import (
    GOLD_FOIL,
    BatchSpec,
    annotation_order,
    annotator_stats,
    batch_votes,
    choice_counts,
    count_comparisons,
    create_batch,
    next_item,
    preference_pairs,
    simulated_choices,
)
from tasks.preferences.store import (
    Batch,
    Item,
    annotator_for,
    invite,
    open_database,
    record_vote,
)

PROMPTS = [f"Prompt number {i}:" for i in range(20)]
seeds_seen: list[tuple[str, int]] = []


def fake_sampler(model: str, prompts: list[str], seed: int) -> list[str]:
    """Stands in for a model: 'good' writes long answers, 'bad' short ones."""
    seeds_seen.append((model, seed))
    return [f"{p} {'a fine and complete answer' if model == 'good' else 'meh'}" for p in prompts]


def test_a_batch_pairs_every_model_on_every_prompt_with_recorded_sides(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        spec = BatchSpec(
            "b1", ["good", "bad", "ugly"], PROMPTS, seed=5, repeat_fraction=0.1, gold_fraction=0.0
        )
        batch = create_batch(session, spec, fake_sampler)
        items = session.scalars(select(Item).where(Item.batch_id == batch.id)).all()
        originals = [i for i in items if i.repeat_of is None]
        repeats = [i for i in items if i.repeat_of is not None]
        assert len(originals) == 20 * 3 and len(repeats) == 6
        # Every model drew with the same seed.
        assert {seed for _, seed in seeds_seen[-3:]} == {5}
        # Sides are random: each model shows up on the left in a fair share of its items.
        lefts = Counter(i.left.model for i in originals)
        assert all(12 <= lefts[m] <= 28 for m in ("good", "bad", "ugly"))
        first = session.get(Item, repeats[0].repeat_of)
        assert (repeats[0].left_id, repeats[0].right_id) == (first.right_id, first.left_id)


def test_simulated_votes_never_mix_with_human_ones(database_url):
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch = create_batch(
            session,
            BatchSpec(
                "b2", ["good", "bad"], PROMPTS, seed=1, repeat_fraction=0.0, gold_fraction=0.0
            ),
            fake_sampler,
        )
        items = session.scalars(select(Item).where(Item.batch_id == batch.id)).all()
        judge = annotator_for(session, invite(session, batch, "judge", simulated=True))
        # The judge prefers less "surprise": here, simply the shorter text loses.
        choices = simulated_choices(items, lambda prompt, text: -len(text))
        for item, choice in zip(items, choices, strict=True):
            record_vote(session, judge, item.id, choice)
        human = annotator_for(session, invite(session, batch, "ana"))
        record_vote(session, human, items[0].id, "tie")

        simulated = batch_votes(session, batch, simulated=True)
        people = batch_votes(session, batch)
        assert len(simulated) == 20 and len(people) == 1 and people[0].choice == "tie"
        assert win_rate(simulated, "good", "bad").rate == 1.0
        assert win_rate(people, "good", "bad").ties == 1


@pytest.fixture
def voted_batch(database_url) -> Iterator[tuple[Session, Batch]]:
    """A batch with repeats and gold items, in a session the test goes on using (closed
    after it: an open transaction would hold PostgreSQL's locks into the next test)."""
    with Session(open_database(database_url)) as session:  # closing rolls back
        spec = BatchSpec(
            "b3", ["good", "bad"], PROMPTS, seed=2, repeat_fraction=0.2, gold_fraction=0.25
        )
        yield session, create_batch(session, spec, fake_sampler)


def test_gold_items_pit_a_real_text_against_its_own_words_shuffled(voted_batch):
    session, batch = voted_batch
    gold = session.scalars(select(Item).where(Item.gold_choice.is_not(None))).all()
    assert len(gold) == 5  # a quarter of the 20 comparison items
    for item in gold:
        real = item.left if item.gold_choice == "left" else item.right
        foil = item.right if item.gold_choice == "left" else item.left
        assert real.model in ("good", "bad") and foil.model == GOLD_FOIL
        assert sorted(foil.text.split()) == sorted(real.text.split())
        assert foil.text != real.text
    assert Counter(i.gold_choice for i in gold).keys() <= {"left", "right"}


def test_each_annotator_gets_a_shuffled_order_with_repeats_well_after_their_first(voted_batch):
    session, batch = voted_batch
    items = session.scalars(select(Item).where(Item.batch_id == batch.id)).all()
    first, second = annotation_order(items, 1), annotation_order(items, 2)
    assert sorted(i.id for i in first) == sorted(i.id for i in items)
    assert [i.id for i in first] != [i.id for i in second]
    assert [i.id for i in first] == [i.id for i in annotation_order(items, 1)]  # stable
    # The order depends on the items alone, not on the order the database returned them in
    # (PostgreSQL promises none without ORDER BY), so the next screen is always the same.
    assert [i.id for i in first] == [i.id for i in annotation_order(items[::-1], 1)]
    position = {item.id: n for n, item in enumerate(first)}
    for item in items:
        if item.repeat_of is not None:
            assert position[item.id] >= position[item.repeat_of] + 5 or position[item.id] == (
                len(items) - 1
            )


def test_stats_and_pairs_judge_annotators_on_gold_and_repeats_and_models_on_the_rest(voted_batch):
    session, batch = voted_batch
    ana = annotator_for(session, invite(session, batch, "ana"))
    # Ana always picks the longer text: she gets every gold item and every repeat right.
    while True:
        item, progress = next_item(session, ana)
        if item is None:
            break
        longer = "left" if len(item.left.text) >= len(item.right.text) else "right"
        if item.gold_choice is not None:
            longer = item.gold_choice
        record_vote(session, ana, item.id, longer)
    assert progress.done == progress.total == 20 + 4 + 5
    (stats,) = annotator_stats(session, batch)
    assert (stats.votes, stats.gold_correct, stats.gold_seen) == (29, 5, 5)
    assert (stats.repeats_agreeing, stats.repeats_seen) == (4, 4)
    assert count_comparisons(session, batch) == 20
    assert choice_counts(session, batch) == {
        "human comparison": 20,
        "human gold": 5,
        "human repeat": 4,
    }
    pairs = preference_pairs(session, batch)
    assert len(pairs) == 20
    assert all(p["chosen_model"] == "good" and p["rejected_model"] == "bad" for p in pairs)
    assert all(p["chosen"].startswith(p["prompt"]) and "fine" in p["chosen"] for p in pairs)
    assert preference_pairs(session, batch, simulated=True) == []
