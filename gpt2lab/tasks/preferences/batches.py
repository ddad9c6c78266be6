"""Making a comparison batch, reading its votes back, and the simulated judge for demos.

A batch samples one continuation per prompt from every model, with the same seed for
all models of a prompt (so no model is luckier with its random draws), and makes an
item for every pair of models on every prompt, with the sides drawn at random once and
recorded. Some items come back a second time with the sides swapped: whether an
annotator gives the same answer twice is their self-agreement.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpt2lab.tasks.preferences import analysis
from gpt2lab.tasks.preferences.store import Annotator, Batch, Item, Sample, Vote

# (model name, prompts, seed) -> one continuation per prompt
Sampler = Callable[[str, list[str], int], list[str]]


@dataclass(frozen=True)
class BatchSpec:
    name: str
    models: list[str]
    prompts: list[str]
    seed: int = 0
    repeat_fraction: float = 0.1  # items shown twice (sides swapped) for self-agreement
    settings: dict = field(default_factory=dict)  # sampling settings, recorded


def create_batch(session: Session, spec: BatchSpec, sample: Sampler) -> Batch:
    """Sample every model on every prompt and lay out the items (see the module doc)."""
    if len(spec.models) < 2:
        raise ValueError("a comparison needs at least two models")
    batch = Batch(name=spec.name, models=list(spec.models),
                  settings={**spec.settings, "seed": spec.seed})  # fmt: skip
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
            items.append(Item(batch_id=batch.id, prompt=prompt, left_id=pair[0].id,
                              right_id=pair[1].id))  # fmt: skip
    session.add_all(items)
    session.flush()
    for item in rng.sample(items, round(spec.repeat_fraction * len(items))):
        session.add(Item(batch_id=batch.id, prompt=item.prompt, left_id=item.right_id,
                         right_id=item.left_id, repeat_of=item.id))  # fmt: skip
    session.flush()
    return batch


def batch_votes(session: Session, batch: Batch, *, simulated: bool = False) -> list[analysis.Vote]:
    """The batch's votes as the analysis reads them: human votes only, or (with
    `simulated=True`) the simulated judge's only. The two are never mixed."""
    rows = session.execute(
        select(Vote, Item, Annotator)
        .join(Item, Vote.item_id == Item.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .where(Item.batch_id == batch.id, Vote.simulated == simulated)
        .order_by(Vote.id)
    ).all()
    return [
        analysis.Vote(
            item=str(item.repeat_of or item.id),
            annotator=annotator.name,
            left_model=item.left.model,
            right_model=item.right.model,
            choice=vote.choice,
        )  # fmt: skip
        for vote, item, annotator in rows
    ]


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
