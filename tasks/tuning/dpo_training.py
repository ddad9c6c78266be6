"""DPO fine-tuning of a policy on comparisons, against a frozen copy of where it started.

What is logged, and how to read it (see `model/dpo.py` for the loss):

- `loss`: starts at log 2 = 0.693 (policy = reference: no preference either way);
- implicit rewards, beta * log pi(y)/ref(y), of the chosen and the rejected texts, their
  `margin` (chosen minus rejected) and `accuracy` (the share of pairs with margin > 0);
- `kl`: KL(policy || reference) in nats per continuation, on continuations the policy
  samples for held-out prompts. It says how far the tuned model has moved: a policy can
  win its comparisons by drifting into text the reference finds very unlikely, and a KL
  that keeps growing is the sign of it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import Field

from model import GPT, Tokenizer
from model.dpo import dpo_loss, sequence_kl, sequence_log_probs
from model.sampling import SamplingConfig, generate
from tasks.tuning.comparisons import Comparison, Split
from tasks.tuning.loop import LoopResult, LoopSettings, Metrics, OnMetrics, optimise
from tasks.tuning.sequences import encode_pair, pad_right, shuffled_batches

Pair = tuple[str, str, str]  # prompt, chosen, rejected


class DPOSettings(LoopSettings):
    """How the policy is tuned. beta 0.1 is the DPO paper's; the learning rate suits GPT-2
    small (a tiny model learns faster with a larger one)."""

    beta: float = Field(0.1, gt=0, description="strength of the pull back to the reference")
    learning_rate: float = Field(1e-5, gt=0)
    kl_prompts: int = Field(32, ge=1, description="held-out prompts sampled to measure KL")
    kl_max_new_tokens: int = Field(32, ge=1, description="length of those samples")


@dataclass
class DPOResult(LoopResult):  # held_out: the final loss, margin, accuracy and KL
    policy: GPT


def as_pairs(comparisons: Sequence[Comparison]) -> list[Pair]:
    return [(c.prompt, chosen, rejected) for c in comparisons for chosen, rejected in c.pairs()]


def train_dpo(
    start: GPT,
    tokenizer: Tokenizer,
    split: Split,
    settings: DPOSettings,
    *,
    device: torch.device = torch.device("cpu"),
    on_metrics: OnMetrics | None = None,
    progress: Path | None = None,
) -> DPOResult:
    """Tune a copy of `start` on `split.train` with DPO, the reference being `start`
    itself, frozen; measured on `split.held_out` every `eval_every` steps and at the end.
    With `progress`, a folder to save progress in and resume from."""
    torch.manual_seed(settings.seed)
    reference = copy.deepcopy(start).to(device).eval().requires_grad_(False)
    policy = copy.deepcopy(start).to(device)
    # No dropout: the implicit reward compares the policy's log-probabilities with the
    # reference's, and dropout noise in one of them would blur that comparison.
    policy.eval()
    max_tokens = settings.max_tokens or start.config.block_size
    train, held_out = as_pairs(split.train), as_pairs(split.held_out)
    # The reference never changes: its log-probabilities are computed once, up front.
    reference_train = _log_probs(reference, tokenizer, train, max_tokens, settings, device)
    reference_held_out = _log_probs(reference, tokenizer, held_out, max_tokens, settings, device)
    kl_prompts = list(dict.fromkeys(prompt for prompt, _, _ in held_out))[: settings.kl_prompts]

    def loss_of(indices: list[int]) -> tuple[torch.Tensor, Metrics]:
        chosen, rejected = _policy_log_probs(
            policy, tokenizer, [train[i] for i in indices], max_tokens, device
        )
        ref = reference_train[indices]
        out = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], settings.beta)
        # `train/<name>`, beside the loop's `loss/train` (names: see tasks/tuning/loop.py).
        return out.loss, {
            "train/margin": out.margins.mean().item(),
            "train/accuracy": (out.margins > 0).float().mean().item(),
        }

    def measure() -> Metrics:
        metrics = _evaluate(
            policy, tokenizer, held_out, reference_held_out, max_tokens, settings, device
        )
        metrics["kl"] = mean_kl(policy, reference, tokenizer, kl_prompts, settings, device)
        return metrics

    result = optimise(
        policy,
        settings,
        loss_of=loss_of,
        measure=measure,
        on_metrics=on_metrics,
        progress=progress,
        minibatches=lambda rng: shuffled_batches(len(train), settings.batch_size, rng),
    )
    return DPOResult(**vars(result), policy=policy)


def _policy_log_probs(
    model: GPT,
    tokenizer: Tokenizer,
    pairs: Sequence[Pair],
    max_tokens: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) log-probabilities of the chosen and of the rejected continuations, in one pass."""
    rows = [encode_pair(tokenizer, prompt, chosen, max_tokens) for prompt, chosen, _ in pairs]
    rows += [encode_pair(tokenizer, prompt, rejected, max_tokens) for prompt, _, rejected in pairs]
    sequences = pad_right(rows).to(device)
    log_probs = sequence_log_probs(model, sequences.idx, sequences.continuation_mask)
    return log_probs[: len(pairs)], log_probs[len(pairs) :]


@torch.no_grad()
def _log_probs(
    model: GPT,
    tokenizer: Tokenizer,
    pairs: Sequence[Pair],
    max_tokens: int,
    settings: DPOSettings,
    device: torch.device,
) -> torch.Tensor:
    """(N, 2): every pair's chosen and rejected log-probabilities under `model`."""
    out = torch.zeros(len(pairs), 2, device=device)
    for start in range(0, len(pairs), settings.batch_size):
        chunk = pairs[start : start + settings.batch_size]
        chosen, rejected = _policy_log_probs(model, tokenizer, chunk, max_tokens, device)
        out[start : start + len(chunk)] = torch.stack([chosen, rejected], dim=1)
    return out


@torch.no_grad()
def _evaluate(
    policy: GPT,
    tokenizer: Tokenizer,
    pairs: Sequence[Pair],
    reference: torch.Tensor,
    max_tokens: int,
    settings: DPOSettings,
    device: torch.device,
) -> Metrics:
    """The DPO loss, implicit rewards, margin and accuracy on held-out pairs."""
    if not pairs:
        return {"loss": math.nan, "margin": math.nan, "accuracy": math.nan}
    policy_log_probs = _log_probs(policy, tokenizer, pairs, max_tokens, settings, device)
    out = dpo_loss(
        policy_log_probs[:, 0],
        policy_log_probs[:, 1],
        reference[:, 0],
        reference[:, 1],
        settings.beta,
    )
    return {
        "loss": out.loss.item(),
        "margin": out.margins.mean().item(),
        "accuracy": (out.margins > 0).float().mean().item(),
        "chosen_reward": out.chosen_rewards.mean().item(),
        "rejected_reward": out.rejected_rewards.mean().item(),
    }


@torch.no_grad()
def mean_kl(
    policy: GPT,
    reference: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    settings: DPOSettings,
    device: torch.device,
) -> float:
    """KL(policy || reference) in nats per continuation, averaged over continuations the
    policy samples (plain sampling at temperature 1: the distribution being measured)."""
    if not prompts:
        return math.nan
    room = policy.config.block_size - settings.kl_max_new_tokens
    sampling = SamplingConfig(max_new_tokens=settings.kl_max_new_tokens, seed=settings.seed)
    total = 0.0
    for start in range(0, len(prompts), settings.batch_size):
        contexts = [
            (tokenizer.encode(p) or [tokenizer.eot_token])[-room:]
            for p in prompts[start : start + settings.batch_size]
        ]
        completions = generate(policy, contexts, sampling, eot_token=tokenizer.eot_token)
        rows = [
            (context + c.tokens, len(context))
            for context, c in zip(contexts, completions, strict=True)
        ]
        sequences = pad_right(rows).to(device)
        total += (
            sequence_kl(policy, reference, sequences.idx, sequences.continuation_mask).sum().item()
        )
    return total / len(prompts)
