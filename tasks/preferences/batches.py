"""Making a comparison batch, handing its items to annotators, and reading the votes back.

A batch samples one continuation per prompt from every model, with the same seed for
all models of a prompt (so no model is luckier with its random draws), and makes an
item for every pair of models on every prompt, with the sides drawn at random once and
recorded. Two kinds of extra items check the annotators rather than the models:

- **repeats**: an item shown a second time, sides swapped; whether an annotator gives
  the same answer twice is their self-agreement;
- **gold items**: a real continuation against a "foil", the same words shuffled into
  nonsense, so the right answer is known; an annotator who often misses it is guessing.

Neither kind counts towards a model's win rate.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased, joinedload

from tasks.preferences import analysis
from tasks.preferences.store import Annotator, Batch, Item, Sample, Vote

# (model name, prompts, seed) -> one continuation per prompt
Sampler = Callable[[str, list[str], int], list[str]]

GOLD_FOIL = "gold:shuffled-words"


class ItemLike(Protocol):
    """What laying out an order needs of an item: an Item, or just its ids from a query."""

    id: int
    repeat_of: int | None  # the "model" name of a gold item's foil


@dataclass(frozen=True)
class BatchSpec:
    name: str
    models: list[str]
    prompts: list[str]
    seed: int = 0
    repeat_fraction: float = 0.1  # items shown twice (sides swapped) for self-agreement
    gold_fraction: float = 0.1  # extra items with a known answer (real text vs shuffled)
    settings: dict = field(default_factory=dict)  # sampling settings, recorded
    target_votes: int | None = None  # collection ends with this many human comparisons...
    deadline: datetime | None = None  # ...or at this moment, whichever comes first


def create_batch(session: Session, spec: BatchSpec, sample: Sampler) -> Batch:
    """Sample every model on every prompt and lay out the items (see the module doc)."""
    if len(spec.models) < 2:
        raise ValueError("a comparison needs at least two models")
    if len(set(spec.models)) != len(spec.models):
        raise ValueError(f"the models to compare must differ: {spec.models}")
    batch = Batch(
        name=spec.name,
        models=list(spec.models),
        settings={**spec.settings, "seed": spec.seed},
        target_votes=spec.target_votes,
        deadline=spec.deadline,
    )
    session.add(batch)
    session.flush()
    samples: dict[str, list[Sample]] = {}
    for model in spec.models:
        texts = sample(model, spec.prompts, spec.seed)
        samples[model] = [
            Sample(batch_id=batch.id, prompt=prompt, model=model, text=text, seed=spec.seed)
            for prompt, text in zip(spec.prompts, texts, strict=True)
        ]
        session.add_all(samples[model])
    session.flush()
    rng = random.Random(spec.seed)
    items = []
    for index, prompt in enumerate(spec.prompts):
        for a, b in combinations(spec.models, 2):
            pair = [samples[a][index], samples[b][index]]
            rng.shuffle(pair)  # which side each model is shown on: drawn, then recorded
            items.append(
                Item(batch_id=batch.id, prompt=prompt, left_id=pair[0].id, right_id=pair[1].id)
            )
    session.add_all(items)
    session.flush()
    for item in rng.sample(items, round(spec.repeat_fraction * len(items))):
        session.add(
            Item(
                batch_id=batch.id,
                prompt=item.prompt,
                left_id=item.right_id,
                right_id=item.left_id,
                repeat_of=item.id,
            )
        )
    _add_gold_items(session, batch, samples, round(spec.gold_fraction * len(items)), rng)
    session.flush()
    return batch


def _add_gold_items(
    session: Session,
    batch: Batch,
    samples: dict[str, list[Sample]],
    count: int,
    rng: random.Random,
) -> None:
    real = [
        s for model_samples in samples.values() for s in model_samples if len(s.text.split()) >= 4
    ]  # too short to shuffle into nonsense
    for original in rng.sample(real, min(count, len(real))):
        words = original.text.split()
        while words == original.text.split():
            rng.shuffle(words)
        foil = Sample(
            batch_id=batch.id,
            prompt=original.prompt,
            model=GOLD_FOIL,
            text=" ".join(words),
            seed=original.seed,
        )
        session.add(foil)
        session.flush()
        gold_choice = rng.choice(["left", "right"])  # the side the real text goes on
        left, right = (original, foil) if gold_choice == "left" else (foil, original)
        session.add(
            Item(
                batch_id=batch.id,
                prompt=original.prompt,
                left_id=left.id,
                right_id=right.id,
                gold_choice=gold_choice,
            )
        )


# ---------------------------------------------------------------------------------------
# Handing out items


def annotation_order(items: Sequence[ItemLike], annotator_id: int) -> list[ItemLike]:
    """The order one annotator sees the batch's items in: shuffled for each annotator
    (so that early fatigue does not always fall on the same items), and every repeat at
    least a few screens after its first showing, when the first answer is not in view."""
    rng = random.Random(annotator_id)
    # Shuffle from a fixed order: the database may return rows in any order (PostgreSQL
    # promises none without ORDER BY), and the same annotator must always get the same list.
    firsts = sorted((item for item in items if item.repeat_of is None), key=lambda i: i.id)
    rng.shuffle(firsts)
    order = list(firsts)
    for repeat in sorted((i for i in items if i.repeat_of is not None), key=lambda i: i.id):
        after = next(n for n, item in enumerate(order) if item.id == repeat.repeat_of)
        low = min(after + 5, len(order))
        order.insert(rng.randint(low, len(order)), repeat)
    return order


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


def next_item(session: Session, annotator: Annotator) -> tuple[Item | None, Progress]:
    """The first item in the annotator's order they have not voted on (None when done)."""
    # Only ids are needed to lay out the order; the one item shown is loaded after, with
    # its two samples in the same query.
    items = session.execute(
        select(Item.id, Item.repeat_of).where(Item.batch_id == annotator.batch_id)
    ).all()
    voted = set(session.scalars(select(Vote.item_id).where(Vote.annotator_id == annotator.id)))
    order = annotation_order(items, annotator.id)
    progress = Progress(done=len(voted), total=len(order))
    next_id = next((item.id for item in order if item.id not in voted), None)
    if next_id is None:
        return None, progress
    options = [joinedload(Item.left), joinedload(Item.right)]
    return session.get(Item, next_id, options=options), progress


# ---------------------------------------------------------------------------------------
# Reading votes back


def _comparison_votes(batch: Batch, *, simulated: bool):
    """A query for the votes that judge models: not on gold items, not on repeats."""
    return (
        select(Vote, Item, Annotator)
        .join(Item, Vote.item_id == Item.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .where(
            Item.batch_id == batch.id,
            Vote.simulated == simulated,
            Item.gold_choice.is_(None),
            Item.repeat_of.is_(None),
        )
        .order_by(Vote.id)
    )


def count_comparisons(session: Session, batch: Batch, *, simulated: bool = False) -> int:
    """How many votes on the batch's model comparisons are in (what `target_votes` counts)."""
    query = _comparison_votes(batch, simulated=simulated).with_only_columns(func.count())
    return session.scalar(query.order_by(None)) or 0


def batch_votes(session: Session, batch: Batch, *, simulated: bool = False) -> list[analysis.Vote]:
    """The batch's model comparisons as the analysis reads them: human votes only, or
    (with `simulated=True`) the simulated judge's only. The two are never mixed."""
    rows = session.execute(_comparison_votes(batch, simulated=simulated)).all()
    return [
        analysis.Vote(
            item=str(item.id),
            annotator=annotator.name,
            left_model=item.left.model,
            right_model=item.right.model,
            choice=vote.choice,
        )
        for vote, item, annotator in rows
    ]


@dataclass(frozen=True)
class AnnotatorStats:
    name: str
    simulated: bool
    votes: int
    gold_correct: int
    gold_seen: int
    repeats_agreeing: int  # a repeat answered the same way as its first showing
    repeats_seen: int
    last_vote: datetime | None

    @property
    def gold_accuracy(self) -> float:
        return self.gold_correct / self.gold_seen if self.gold_seen else float("nan")

    @property
    def self_agreement(self) -> float:
        return self.repeats_agreeing / self.repeats_seen if self.repeats_seen else float("nan")


def annotator_stats(session: Session, batch: Batch) -> list[AnnotatorStats]:
    """Every annotator's count of votes, gold accuracy and self-agreement on repeats."""
    annotators = session.scalars(
        select(Annotator).where(Annotator.batch_id == batch.id).order_by(Annotator.id)
    ).all()
    votes = session.execute(
        select(Vote, Item).join(Item, Vote.item_id == Item.id).where(Item.batch_id == batch.id)
    ).all()
    by_annotator: dict[int, dict[int, tuple[Vote, Item]]] = defaultdict(dict)
    for vote, item in votes:
        by_annotator[vote.annotator_id][item.id] = (vote, item)
    stats = []
    for annotator in annotators:
        mine = by_annotator[annotator.id]
        gold = [(v, i) for v, i in mine.values() if i.gold_choice is not None]
        repeats = [(v, i) for v, i in mine.values() if i.repeat_of in mine]
        agreeing = sum(_same_answer(v, i, *mine[i.repeat_of]) for v, i in repeats)
        times = [v.created_at for v, _ in mine.values()]
        stats.append(
            AnnotatorStats(
                name=annotator.name,
                simulated=annotator.simulated,
                votes=len(mine),
                gold_correct=sum(v.choice == i.gold_choice for v, i in gold),
                gold_seen=len(gold),
                repeats_agreeing=agreeing,
                repeats_seen=len(repeats),
                last_vote=max(times) if times else None,
            )
        )
    return stats


def _same_answer(vote: Vote, item: Item, first_vote: Vote, first_item: Item) -> bool:
    """Whether two votes on the same pair (sides possibly swapped) prefer the same thing."""

    def preferred(v: Vote, i: Item) -> int | str:
        return {"left": i.left_id, "right": i.right_id}.get(v.choice, v.choice)

    return preferred(vote, item) == preferred(first_vote, first_item)


def choice_counts(session: Session, batch: Batch) -> dict[str, int]:
    """Live counts for the admin page: votes by kind of item and by judge."""
    rows = session.execute(
        select(Vote.simulated, Item.gold_choice.is_not(None), Item.repeat_of.is_not(None))
        .join(Item, Vote.item_id == Item.id)
        .where(Item.batch_id == batch.id)
    ).all()
    counts: Counter[str] = Counter()
    for simulated, gold, repeat in rows:
        kind = "gold" if gold else "repeat" if repeat else "comparison"
        counts[f"{'simulated' if simulated else 'human'} {kind}"] += 1
    return dict(sorted(counts.items()))


def vote_records(session: Session, batch: Batch) -> list[dict]:
    """Every vote of the batch with what was shown: the admin's export (CSV or JSON)."""
    left, right = aliased(Sample), aliased(Sample)
    rows = session.execute(
        select(Vote, Item, Annotator, left, right)
        .join(Item, Vote.item_id == Item.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .join(left, Item.left_id == left.id)
        .join(right, Item.right_id == right.id)
        .where(Item.batch_id == batch.id)
        .order_by(Vote.id)
    ).all()
    return [
        {
            "vote_id": vote.id,
            "batch": batch.name,
            "item_id": item.id,
            "annotator": annotator.name,
            "simulated": vote.simulated,
            "choice": vote.choice,
            "comment": vote.comment,
            "prompt": item.prompt,
            "left_model": shown_left.model,
            "right_model": shown_right.model,
            "left_text": shown_left.text,
            "right_text": shown_right.text,
            "gold_choice": item.gold_choice,
            "repeat_of": item.repeat_of,
            "created_at": vote.created_at.isoformat(),
        }
        for vote, item, annotator, shown_left, shown_right in rows
    ]


def preference_pairs(session: Session, batch: Batch, *, simulated: bool = False) -> list[dict]:
    """Decided comparisons as `prompt` / `chosen` / `rejected` rows: the format reward-model
    and DPO trainers read. Ties and "both bad" say nothing about which text is better, and
    gold items and repeats judge the annotators, so none of those become pairs."""
    pairs = []
    for record in vote_records(session, batch):
        judges_models = record["gold_choice"] is None and record["repeat_of"] is None
        decided = record["choice"] in ("left", "right")
        if record["simulated"] != simulated or not (judges_models and decided):
            continue
        win, lose = ("left", "right") if record["choice"] == "left" else ("right", "left")
        pairs.append(
            {
                "prompt": record["prompt"],
                "chosen": record[f"{win}_text"],
                "rejected": record[f"{lose}_text"],
                "chosen_model": record[f"{win}_model"],
                "rejected_model": record[f"{lose}_model"],
                "annotator": record["annotator"],
                "item_id": record["item_id"],
                "vote_id": record["vote_id"],
            }
        )
    return pairs


def simulated_choices(items: Sequence[Item], surprise: Callable[[str, str], float]) -> list[str]:
    """A scripted judge: prefers the continuation the reference model finds less
    surprising (lower `surprise(prompt, continuation)`, e.g. loss per token); equal
    surprise is a tie. For demos and tests only; its votes are marked simulated."""
    choices = []
    for item in items:
        left = surprise(item.prompt, item.left.text)
        right = surprise(item.prompt, item.right.text)
        choices.append("tie" if left == right else "left" if left < right else "right")
    return choices
