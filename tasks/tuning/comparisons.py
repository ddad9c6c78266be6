"""The training data of preference tuning: comparisons, read from a batch's votes or a file.

A comparison is a prompt, the samples that were shown for it together, and which one the
judge chose. The comparison page shows two samples, so a batch gives pairs; a JSON-lines
file may also hold four per prompt (the best-of-4 data of Ziegler et al., 2019):

    {"prompt": "...", "chosen": "...", "rejected": "..."}
    {"prompt": "...", "samples": ["...", "...", "...", "..."], "best": 2}

Only *decided* votes on the batch's model comparisons count: ties and "both bad" say
nothing about which text is better, and gold items and repeats check the annotators, not
the models. Human and simulated votes are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from tasks.preferences.store import Annotator, Batch, Item, PreferenceError, Sample, Vote


@dataclass(frozen=True)
class Comparison:
    prompt: str
    samples: tuple[str, ...]  # shown together
    best: int  # the index of the sample the judge chose
    source: str = ""  # where it came from, for messages: "vote 12" or "file.jsonl:3"

    def pairs(self) -> list[tuple[str, str]]:
        """(chosen, rejected) for every sample the chosen one beat: one pair, or three of
        a best-of-4 comparison (what DPO trains on)."""
        chosen = self.samples[self.best]
        return [(chosen, other) for i, other in enumerate(self.samples) if i != self.best]


@dataclass(frozen=True)
class BatchComparisons:
    batch: str
    models: list[str]  # the batch's models, in its order
    judge: str  # "people" or "simulated": whose votes these are
    comparisons: list[Comparison]
    votes: int  # this judge's votes on model comparisons, undecided ones included
    fingerprint: str  # of the votes used: a new vote gives a new fingerprint (lineage)
    prompts: list[str]  # the batch's prompts, in the order they were sampled


def comparisons_from_batch(
    session: Session, batch_name: str, *, allow_simulated: bool = False
) -> BatchComparisons:
    """The decided votes of batch `batch_name` as comparisons: people's votes; the simulated
    judge's only when `allow_simulated` is set and no person has voted.

    Refuses, with a message that says why: an unknown batch, a batch without votes, votes
    whose samples are missing from the database, only simulated votes without the switch,
    and votes that are all ties or "both bad".
    """
    batch = session.scalar(select(Batch).where(Batch.name == batch_name))
    if batch is None:
        raise PreferenceError(f"no batch named {batch_name!r} in the preferences database")
    # Outer joins: a vote whose sample rows are gone must be reported, not silently dropped.
    left, right = aliased(Sample), aliased(Sample)
    rows = session.execute(
        select(Vote, Item, Annotator.simulated, left, right)
        .join(Item, Vote.item_id == Item.id)
        .join(Annotator, Vote.annotator_id == Annotator.id)
        .outerjoin(left, Item.left_id == left.id)
        .outerjoin(right, Item.right_id == right.id)
        .where(Item.batch_id == batch.id, Item.gold_choice.is_(None), Item.repeat_of.is_(None))
        .order_by(Vote.id)
    ).all()
    if not rows:
        raise PreferenceError(
            f"batch {batch_name!r} has no votes on its comparisons yet: "
            "collect some first (gpt2lab serve-comparisons)"
        )
    for vote, item, _, shown_left, shown_right in rows:
        for side, sample, sample_id in (
            ("left", shown_left, item.left_id),
            ("right", shown_right, item.right_id),
        ):
            if sample is None:
                raise PreferenceError(
                    f"batch {batch_name!r}: vote {vote.id} (item {item.id}) refers to the "
                    f"{side} sample {sample_id}, which is missing from the database"
                )
    human = [row for row in rows if not row.simulated]
    if human:
        chosen_rows, judge = human, "people"
    elif allow_simulated:
        chosen_rows, judge = rows, "simulated"
    else:
        raise PreferenceError(
            f"batch {batch_name!r} has only simulated votes ({len(rows)}), from a scripted "
            "judge rather than people: allow them explicitly (--allow-simulated) to train on them"
        )
    comparisons = [
        Comparison(
            item.prompt,
            (shown_left.text, shown_right.text),
            0 if vote.choice == "left" else 1,
            f"vote {vote.id}",
        )
        for vote, item, _, shown_left, shown_right in chosen_rows
        if vote.choice in ("left", "right")
    ]
    if not comparisons:
        raise PreferenceError(
            f"batch {batch_name!r}: its {len(chosen_rows)} {judge} votes are "
            "all ties or 'both bad': none says which text is better"
        )
    used = json.dumps([(row.Vote.id, row.Vote.choice) for row in chosen_rows])
    prompts = session.scalars(
        select(Sample.prompt)
        .where(Sample.batch_id == batch.id, Sample.model == batch.models[0])
        .order_by(Sample.id)
    ).all()
    return BatchComparisons(
        batch=batch_name,
        models=list(batch.models),
        judge=judge,
        comparisons=comparisons,
        votes=len(chosen_rows),
        fingerprint=hashlib.sha256(used.encode()).hexdigest(),
        prompts=list(prompts),
    )


def read_comparisons(path: Path) -> list[Comparison]:
    """Comparisons from a JSON-lines file (see the module doc); errors name file and line."""
    if not path.is_file():
        raise PreferenceError(f"comparisons file {path}: no such file")
    comparisons = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                comparisons.append(_comparison_of(line, f"{path}:{line_number}"))
    if not comparisons:
        raise PreferenceError(f"comparisons file {path}: no comparison in it")
    return comparisons


def _comparison_of(line: str, where: str) -> Comparison:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise PreferenceError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(row, dict):
        raise PreferenceError(f"{where}: expected an object with 'prompt', 'chosen', 'rejected'")
    if "samples" in row:
        samples, best = row["samples"], row.get("best")
        if not isinstance(samples, list) or len(samples) < 2:
            raise PreferenceError(f"{where}: field 'samples' must be a list of 2 or more texts")
        if not isinstance(best, int) or isinstance(best, bool) or not 0 <= best < len(samples):
            raise PreferenceError(
                f"{where}: field 'best' must be a sample's index, 0 to {len(samples) - 1}"
            )
        fields = {"prompt": row.get("prompt")} | {f"samples[{i}]": s for i, s in enumerate(samples)}
    else:
        fields = {name: row.get(name) for name in ("prompt", "chosen", "rejected")}
        samples, best = [fields["chosen"], fields["rejected"]], 0
    for name, value in fields.items():
        if not isinstance(value, str):
            problem = "is missing" if value is None else f"is {type(value).__name__}, not text"
            raise PreferenceError(f"{where}: field {name!r} {problem}")
    return Comparison(row["prompt"], tuple(samples), best, where)


@dataclass(frozen=True)
class Split:
    train: list[Comparison]
    held_out: list[Comparison]


def split_by_prompt(
    comparisons: Sequence[Comparison], held_out_fraction: float, seed: int
) -> Split:
    """Hold out the comparisons of a random share of the *prompts* (at least one prompt):
    a prompt seen in training would make the held-out accuracy look better than it is."""
    prompts = sorted({c.prompt for c in comparisons})
    if len(prompts) < 2:
        raise PreferenceError(
            f"the comparisons cover {len(prompts)} prompt: at least 2 are needed, to hold "
            "one out for measuring the result"
        )
    random.Random(seed).shuffle(prompts)
    count = min(len(prompts) - 1, max(1, round(held_out_fraction * len(prompts))))
    held_out = set(prompts[:count])
    return Split(
        train=[c for c in comparisons if c.prompt not in held_out],
        held_out=[c for c in comparisons if c.prompt in held_out],
    )
