"""The simulated annotator: a scripted judge that fills a batch for demos and tests.

It prefers the continuation its reference model finds less surprising: the lower mean
negative log-likelihood per token, given the prompt. That is a crude stand-in for a
person (fluent nonsense wins), which is exactly why its votes are marked simulated
everywhere and never mixed into human results.

The reference must be neither of the compared models: scored by one of them, that model's
own samples look least surprising and it wins every vote. `BigramSurprise` is the
neutral one the demo uses: token bigram models counted from each compared model's
training data (the corpus, the style set), mixed with equal weights, which is neither
model and favours neither side's data. `Surprise` scores with a GPT model of your
choosing (a third checkpoint, say).
"""

from __future__ import annotations

import math
import secrets
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from model import GPT, Tokenizer
from tasks.encode.token_shards import open_shards, read_meta
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


class _SurprisePerToken:
    """Mean NLL per token of a continuation after a prompt, by the model of a subclass
    (`nll_per_token`); cached per (prompt, text), since the same sample appears in several
    items. A continuation with no token is the worst answer: infinitely surprising."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, prompt: str, continuation: str) -> float:
        key = (prompt, continuation)
        if key not in self.cache:
            target = self.tokenizer.encode(continuation)
            nll = self.nll_per_token(self.tokenizer.encode(prompt), target) if target else math.inf
            self.cache[key] = nll
        return self.cache[key]

    def nll_per_token(self, prompt: list[int], target: list[int]) -> float:
        raise NotImplementedError


class Surprise(_SurprisePerToken):
    """Mean NLL per token of a continuation under `model`."""

    def __init__(self, model: GPT, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        self.model = model.eval()

    @torch.no_grad()
    def nll_per_token(self, prompt: list[int], target: list[int]) -> float:
        context = prompt or [self.tokenizer.eot_token]
        return continuation_nll(self.model, context, target).nll / len(target)


class _Bigram:
    """Token pair counts of one corpus, smoothed: P(next | previous) =
    (count(previous, next) + k * P(next)) / (count(previous) + k), with P(next) the token's
    own add-one frequency, so an unseen pair costs what a rare token costs, never infinity.
    Pairs are kept as sorted int64 keys: memory for the pairs seen, not vocabulary squared."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, k: float) -> None:
        self.vocab_size, self.k = vocab_size, k
        tokens = np.asarray(tokens, dtype=np.int64)
        unigrams = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
        self.unigram = (unigrams + 1.0) / (unigrams.sum() + vocab_size)
        self.context = np.bincount(tokens[:-1], minlength=vocab_size).astype(np.float64)
        self.pairs, self.pair_counts = np.unique(
            tokens[:-1] * vocab_size + tokens[1:], return_counts=True
        )

    def probabilities(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        keys = previous * self.vocab_size + following
        counts = np.zeros(len(keys))
        if len(self.pairs):  # pair counts by binary search in the sorted keys
            at = np.minimum(np.searchsorted(self.pairs, keys), len(self.pairs) - 1)
            counts = np.where(self.pairs[at] == keys, self.pair_counts[at], 0)
        prior = self.unigram[following]
        return (counts + self.k * prior) / (self.context[previous] + self.k)


class BigramSurprise(_SurprisePerToken):
    """Mean NLL per token of a continuation under token bigram models of some corpora,
    mixed with equal weights.

    Given the data each compared model was trained on (the web corpus of the pretrained
    model, the style set of the fine-tuned one), the mixture reads both styles alike: a
    big corpus does not outweigh a small style set, and neither model is the judge."""

    def __init__(
        self, sources: list[np.ndarray], tokenizer: Tokenizer, vocab_size: int, k: float = 1.0
    ) -> None:
        if not sources:
            raise ValueError("BigramSurprise needs at least one token source")
        super().__init__(tokenizer)
        self.models = [_Bigram(tokens, vocab_size, k) for tokens in sources]

    @classmethod
    def from_shards(
        cls, folders: list[Path], tokenizer: Tokenizer, max_tokens: int = 20_000_000
    ) -> BigramSurprise:
        """One bigram model per tokens folder's training split (its first `max_tokens`:
        plenty for pair counts, and a bounded cost on a web-scale corpus)."""
        sources = []
        for folder in folders:
            shards = open_shards(folder, "train")
            tokens = np.concatenate([np.asarray(s) for s in shards]) if shards else np.zeros(0)
            sources.append(tokens[:max_tokens])
        return cls(sources, tokenizer, max(read_meta(f).vocab_size for f in folders))

    def nll_per_token(self, prompt: list[int], target: list[int]) -> float:
        context = prompt[-1:] or [self.tokenizer.eot_token]  # a bigram sees one token back
        ids = np.asarray(context + target, dtype=np.int64)
        previous, following = ids[:-1], ids[1:]
        mixed = np.mean([m.probabilities(previous, following) for m in self.models], 0)
        return float(-np.log(mixed).mean())


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


def judge_batch(session: Session, batch: Batch, surprise: Surprise | BigramSurprise) -> int:
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
