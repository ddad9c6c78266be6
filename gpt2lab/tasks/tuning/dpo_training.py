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
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field

from gpt2lab.model import GPT, Tokenizer
from gpt2lab.model.dpo import dpo_loss, sequence_kl, sequence_log_probs
from gpt2lab.model.sampling import SamplingConfig, generate
from gpt2lab.tasks.tuning.comparisons import Comparison, Split
from gpt2lab.tasks.tuning.reward_training import Metrics, OnMetrics
from gpt2lab.tasks.tuning.sequences import (
    encode_pair,
    pad_right,
    shuffled_batches,
    warmup_factor,
)

Pair = tuple[str, str, str]  # prompt, chosen, rejected


class DPOSettings(BaseModel):
    """How the policy is tuned. beta 0.1 is the DPO paper's; the learning rate suits GPT-2
    small (a tiny model learns faster with a larger one)."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(0.1, gt=0, description="strength of the pull back to the reference")
    epochs: int = Field(1, ge=1, description="passes over the training pairs")
    batch_size: int = Field(8, ge=1, description="pairs per optimizer step")
    learning_rate: float = Field(1e-5, gt=0)
    warmup_steps: int = Field(10, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    eval_every: int = Field(50, ge=1, description="steps between held-out measurements")
    max_tokens: int | None = Field(None, ge=2, description="per text; default: the context")
    kl_prompts: int = Field(32, ge=1, description="held-out prompts sampled to measure KL")
    kl_max_new_tokens: int = Field(32, ge=1, description="length of those samples")
    seed: int = 0


@dataclass
class DPOResult:
    policy: GPT
    steps: int
    held_out: Metrics  # the final policy's loss, margin, accuracy and KL on held-out prompts
    history: list[tuple[int, Metrics]] = field(default_factory=list)


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
) -> DPOResult:
    """Tune a copy of `start` on `split.train` with DPO, the reference being `start`
    itself, frozen; measured on `split.held_out` every `eval_every` steps and at the end."""
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
    optimizer = torch.optim.AdamW(policy.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    rng = random.Random(settings.seed)
    history: list[tuple[int, Metrics]] = []

    def measure() -> Metrics:
        metrics = _evaluate(policy, tokenizer, held_out, reference_held_out, max_tokens, settings,
                            device)  # fmt: skip
        metrics["kl"] = mean_kl(policy, reference, tokenizer, kl_prompts, settings, device)
        return metrics

    def report(step: int, metrics: Metrics) -> None:
        history.append((step, metrics))
        if on_metrics is not None:
            on_metrics(step, metrics)

    step, final = 0, {}
    for epoch in range(settings.epochs):
        for indices in shuffled_batches(len(train), settings.batch_size, rng):
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * warmup_factor(step, settings.warmup_steps)
            chosen, rejected = _policy_log_probs(policy, tokenizer, [train[i] for i in indices],
                                                 max_tokens, device)  # fmt: skip
            ref = reference_train[indices]
            out = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], settings.beta)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.grad_clip)
            optimizer.step()
            step += 1
            metrics = {"train/loss": out.loss.item(), "train/margin": out.margins.mean().item(),
                       "train/accuracy": (out.margins > 0).float().mean().item(),
                       "epoch": epoch + 1}  # fmt: skip
            if step % settings.eval_every == 0:
                final = measure()
                metrics |= {f"held_out/{k}": v for k, v in final.items()}
            report(step, metrics)
    if step % settings.eval_every or step == 0:
        final = measure()
        report(step, {f"held_out/{k}": v for k, v in final.items()})
    return DPOResult(policy=policy, steps=step, held_out=final, history=history)


def _policy_log_probs(
    model: GPT, tokenizer: Tokenizer, pairs: Sequence[Pair], max_tokens: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(B,) log-probabilities of the chosen and of the rejected continuations, in one pass."""
    rows = [encode_pair(tokenizer, prompt, chosen, max_tokens) for prompt, chosen, _ in pairs]
    rows += [encode_pair(tokenizer, prompt, rejected, max_tokens) for prompt, _, rejected in pairs]
    sequences = pad_right(rows).to(device)
    log_probs = sequence_log_probs(model, sequences.idx, sequences.continuation_mask)
    return log_probs[: len(pairs)], log_probs[len(pairs) :]


@torch.no_grad()
def _log_probs(
    model: GPT, tokenizer: Tokenizer, pairs: Sequence[Pair], max_tokens: int,
    settings: DPOSettings, device: torch.device,
) -> torch.Tensor:  # fmt: skip
    """(N, 2): every pair's chosen and rejected log-probabilities under `model`."""
    out = torch.zeros(len(pairs), 2, device=device)
    for start in range(0, len(pairs), settings.batch_size):
        chunk = pairs[start : start + settings.batch_size]
        chosen, rejected = _policy_log_probs(model, tokenizer, chunk, max_tokens, device)
        out[start : start + len(chunk)] = torch.stack([chosen, rejected], dim=1)
    return out


@torch.no_grad()
def _evaluate(
    policy: GPT, tokenizer: Tokenizer, pairs: Sequence[Pair], reference: torch.Tensor,
    max_tokens: int, settings: DPOSettings, device: torch.device,
) -> Metrics:  # fmt: skip
    """The DPO loss, implicit rewards, margin and accuracy on held-out pairs."""
    if not pairs:
        return {"loss": math.nan, "margin": math.nan, "accuracy": math.nan}
    policy_log_probs = _log_probs(policy, tokenizer, pairs, max_tokens, settings, device)
    out = dpo_loss(policy_log_probs[:, 0], policy_log_probs[:, 1], reference[:, 0],
                   reference[:, 1], settings.beta)  # fmt: skip
    return {"loss": out.loss.item(), "margin": out.margins.mean().item(),
            "accuracy": (out.margins > 0).float().mean().item(),
            "chosen_reward": out.chosen_rewards.mean().item(),
            "rejected_reward": out.rejected_rewards.mean().item()}  # fmt: skip


@torch.no_grad()
def mean_kl(
    policy: GPT, reference: GPT, tokenizer: Tokenizer, prompts: Sequence[str],
    settings: DPOSettings, device: torch.device,
) -> float:  # fmt: skip
    """KL(policy || reference) in nats per continuation, averaged over continuations the
    policy samples (plain sampling at temperature 1: the distribution being measured)."""
    if not prompts:
        return math.nan
    room = policy.config.block_size - settings.kl_max_new_tokens
    sampling = SamplingConfig(max_new_tokens=settings.kl_max_new_tokens, seed=settings.seed)
    total = 0.0
    for start in range(0, len(prompts), settings.batch_size):
        contexts = [(tokenizer.encode(p) or [tokenizer.eot_token])[-room:]
                    for p in prompts[start : start + settings.batch_size]]  # fmt: skip
        completions = generate(policy, contexts, sampling, eot_token=tokenizer.eot_token)
        rows = [(context + c.tokens, len(context)) for context, c in zip(contexts, completions,
                                                                        strict=True)]  # fmt: skip
        sequences = pad_right(rows).to(device)
        total += sequence_kl(policy, reference, sequences.idx,
                             sequences.continuation_mask).sum().item()  # fmt: skip
    return total / len(prompts)
