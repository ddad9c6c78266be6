"""Training a reward model on comparisons, and measuring it on held-out prompts.

The measure a user reads first is the held-out *pairwise accuracy*: of the (chosen,
other) pairs on prompts the model never trained on, the share it ranks right. 50% is
chance; the agreement between two people bounds what is reachable on real votes (in
Ziegler et al. labellers agreed with each other 60-70% of the time on hard tasks).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from model import GPT, Tokenizer
from model.reward import RewardModel, choice_loss, pairwise_accuracy
from tasks.tuning.comparisons import Comparison, Split
from tasks.tuning.loop import LoopResult, LoopSettings, Metrics, OnMetrics, optimise
from tasks.tuning.sequences import encode_pair, pad_right, shuffled_batches


class RewardSettings(LoopSettings):
    """How the reward model is trained. The defaults suit GPT-2 small on a few thousand
    comparisons; a tiny model on a few hundred wants a larger learning rate and more epochs."""

    learning_rate: float = Field(5e-5, gt=0)


@dataclass
class RewardResult(LoopResult):  # held_out: the final loss, accuracy and pairs
    model: RewardModel


def train_reward_model(
    start: GPT,
    tokenizer: Tokenizer,
    split: Split,
    settings: RewardSettings,
    *,
    device: torch.device = torch.device("cpu"),
    on_metrics: OnMetrics | None = None,
    progress: Path | None = None,
) -> RewardResult:
    """A reward model whose backbone starts from `start` (a copy: `start` is not changed),
    trained on `split.train` and measured on `split.held_out` every `eval_every` steps
    and at the end. With `progress`, a folder to save progress in and resume from."""
    torch.manual_seed(settings.seed)
    model = RewardModel(copy.deepcopy(start)).to(device)
    # No dropout: the loss compares rewards of texts side by side, and dropout would add
    # noise to each of them independently.
    model.eval()
    max_tokens = settings.max_tokens or start.config.block_size
    train = split.train
    sizes = [len(c.samples) for c in train]  # 2 or 4 samples: never in one minibatch

    def loss_of(indices: list[int]) -> tuple[torch.Tensor, Metrics]:
        rewards, best = _rewards(model, tokenizer, [train[i] for i in indices], max_tokens, device)
        right, total = pairwise_accuracy(rewards.detach(), best)
        # `train/<name>`, beside the loop's `loss/train` (names: see tasks/tuning/loop.py).
        return choice_loss(rewards, best), {"train/accuracy": right / total}

    result = optimise(
        model,
        settings,
        on_metrics=on_metrics,
        progress=progress,
        loss_of=loss_of,
        minibatches=lambda rng: shuffled_batches(len(train), settings.batch_size, rng, sizes),
        measure=lambda: evaluate_reward_model(
            model, tokenizer, split.held_out, max_tokens, settings.batch_size, device
        ),
    )
    return RewardResult(**vars(result), model=model)


def _rewards(
    model: RewardModel,
    tokenizer: Tokenizer,
    batch: Sequence[Comparison],
    max_tokens: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) rewards of the batch's samples, and the (B,) indices of the chosen ones."""
    rows = [
        encode_pair(tokenizer, c.prompt, sample, max_tokens, end_with_eot=True)
        for c in batch
        for sample in c.samples
    ]
    sequences = pad_right(rows).to(device)
    rewards = model(sequences.idx, sequences.lengths).view(len(batch), -1)
    best = torch.tensor([c.best for c in batch], device=device)
    return rewards, best


@torch.no_grad()
def evaluate_reward_model(
    model: RewardModel,
    tokenizer: Tokenizer,
    comparisons: Sequence[Comparison],
    max_tokens: int,
    batch_size: int,
    device: torch.device,
) -> Metrics:
    """Mean loss and pairwise accuracy on `comparisons` (NaN when there are none)."""
    if not comparisons:
        return {"loss": math.nan, "accuracy": math.nan, "pairs": 0.0}
    loss_sum, right, total = 0.0, 0, 0
    for indices in shuffled_batches(
        len(comparisons), batch_size, random.Random(0), [len(c.samples) for c in comparisons]
    ):
        batch = [comparisons[i] for i in indices]
        rewards, best = _rewards(model, tokenizer, batch, max_tokens, device)
        loss_sum += choice_loss(rewards, best).item() * len(batch)
        batch_right, batch_total = pairwise_accuracy(rewards, best)
        right, total = right + batch_right, total + batch_total
    return {"loss": loss_sum / len(comparisons), "accuracy": right / total, "pairs": float(total)}


@torch.no_grad()
def score_texts(
    model: RewardModel,
    tokenizer: Tokenizer,
    texts: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_tokens: int | None = None,
) -> list[float]:
    """The reward of each (prompt, continuation): e.g. to compare two models' samples."""
    device = next(model.parameters()).device
    max_tokens = max_tokens or model.backbone.config.block_size
    scores: list[float] = []
    model.eval()
    for start in range(0, len(texts), batch_size):
        rows = [
            encode_pair(tokenizer, prompt, text, max_tokens, end_with_eot=True)
            for prompt, text in texts[start : start + batch_size]
        ]
        sequences = pad_right(rows).to(device)
        scores += model(sequences.idx, sequences.lengths).tolist()
    return scores
