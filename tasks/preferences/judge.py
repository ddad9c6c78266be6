"""The simulated annotator: a scripted judge that fills a batch for demos and tests.

It prefers the continuation its reference model finds less surprising: the lower mean
negative log-likelihood per token, given the prompt. That is a crude stand-in for a
person (fluent nonsense wins), which is exactly why its votes are marked simulated
everywhere and never mixed into human results.
"""

from __future__ import annotations

import math
import secrets

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from model import GPT, Tokenizer
from tasks.evals.likelihood import continuation_nll
from tasks.preferences.batches import simulated_choices
from tasks.preferences.store import (
    Annotator,
    Batch,
    Item,
    Vote,
    hash_token,
    record_vote,
)

SIMULATED_JUDGE = "simulated-judge"


class Surprise:
    """Mean NLL per token of a continuation under `model`; cached per (prompt, text),
    since the same sample appears in several items."""

    def __init__(self, model: GPT, tokenizer: Tokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cache: dict[tuple[str, str], float] = {}

    @torch.no_grad()
    def __call__(self, prompt: str, continuation: str) -> float:
        key = (prompt, continuation)
        if key not in self.cache:
            target = self.tokenizer.encode(continuation)
            if not target:
                self.cache[key] = math.inf  # nothing written: the worst answer
            else:
                context = self.tokenizer.encode(prompt) or [self.tokenizer.eot_token]
                nll = continuation_nll(self.model, context, target).nll
                self.cache[key] = nll / len(target)
        return self.cache[key]


def simulated_judge(session: Session, batch: Batch) -> Annotator:
    """The batch's simulated annotator, made on first use. Its invite token is random and
    thrown away at once (and the page refuses simulated annotators anyway): nobody can
    vote in its name."""
    judge = session.scalar(
        select(Annotator).where(Annotator.batch_id == batch.id, Annotator.simulated)
    )
    if judge is None:
        judge = Annotator(
            batch_id=batch.id,
            name=SIMULATED_JUDGE,
            simulated=True,
            token_hash=hash_token(secrets.token_urlsafe(32)),
        )
        session.add(judge)
        session.flush()
    return judge


def judge_batch(session: Session, batch: Batch, surprise: Surprise) -> int:
    """Vote on every item of `batch` the simulated judge has not voted on; returns how many
    votes it added (0 on a rerun: the judge resumes where it stopped)."""
    judge = simulated_judge(session, batch)
    done = select(Vote.item_id).where(Vote.annotator_id == judge.id)
    todo = session.scalars(
        select(Item).where(Item.batch_id == batch.id, Item.id.not_in(done)).order_by(Item.id)
    ).all()
    for item, choice in zip(todo, simulated_choices(todo, surprise), strict=True):
        record_vote(session, judge, item.id, choice)
    return len(todo)
