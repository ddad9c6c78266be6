"""Comparison batches: same seed per prompt, sides drawn and recorded, repeats swapped,
and simulated votes kept apart from human ones."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpt2lab.tasks.preferences.analysis import win_rate
from gpt2lab.tasks.preferences.batches import (
    BatchSpec,
    batch_votes,
    create_batch,
    simulated_choices,
)
from gpt2lab.tasks.preferences.store import (
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


def test_a_batch_pairs_every_model_on_every_prompt_with_recorded_sides(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    with Session(engine) as session, session.begin():
        spec = BatchSpec("b1", ["good", "bad", "ugly"], PROMPTS, seed=5, repeat_fraction=0.1)
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


def test_simulated_votes_never_mix_with_human_ones(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    with Session(engine) as session, session.begin():
        batch = create_batch(session, BatchSpec("b2", ["good", "bad"], PROMPTS, seed=1,
                                                repeat_fraction=0.0), fake_sampler)  # fmt: skip
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
