"""Scoring text by its probability under the model, for perplexity and LAMBADA-style tasks.

Perplexity asks how surprised the model is by held-out text: exp of the mean negative
log-likelihood per token. A text longer than the model's context is read with a sliding
window: each window sees up to `window` tokens but only the tokens not scored by the
previous window count, so every token is scored once, with as much context as the
stride allows (a smaller stride: more context per token, more compute).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model import GPT


@torch.no_grad()
def rolling_nll(model: GPT, ids: list[int], window: int, stride: int) -> tuple[float, int]:
    """Sum of -log p(token | the tokens before it, up to `window` of them) over every
    token but the first (which has no context), and how many tokens that is."""
    total, scored, previous_end = 0.0, 0, 1  # token 0 is never predicted
    for begin in range(0, max(1, len(ids) - 1), stride):
        end = min(begin + window, len(ids))
        if end <= previous_end:
            break
        chunk = torch.tensor([ids[begin:end]])
        logits, _ = model(chunk[:, :-1])
        log_probs = F.log_softmax(logits[0].float(), dim=-1)
        targets = chunk[0, 1:]
        new = end - previous_end  # the last `new` predictions are tokens not yet scored
        picked = log_probs[-new:].gather(1, targets[-new:].unsqueeze(1))
        total -= picked.sum().item()
        scored += new
        previous_end = end
        if end == len(ids):
            break
    return total, scored


@torch.no_grad()
def continuation_nll(model: GPT, context: list[int], target: list[int]) -> tuple[float, bool]:
    """-log p(target | context), and whether greedy decoding would have produced exactly
    `target` (each of its tokens the most likely one at its position)."""
    room = model.config.block_size + 1
    ids = (context + target)[-room:]
    chunk = torch.tensor([ids])
    logits, _ = model(chunk[:, :-1])
    log_probs = F.log_softmax(logits[0, -len(target) :].float(), dim=-1)
    wanted = torch.tensor(target)
    nll = -log_probs.gather(1, wanted.unsqueeze(1)).sum().item()
    greedy = bool(torch.equal(log_probs.argmax(dim=-1), wanted))
    return nll, greedy


def perplexity(nll: float, tokens: int) -> float:
    return math.exp(nll / tokens) if tokens else float("nan")


def bits_per_byte(nll: float, utf8_bytes: int) -> float:
    """Total information in bits over the text's bytes: comparable across tokenizers,
    unlike perplexity per token."""
    return nll / math.log(2) / utf8_bytes if utf8_bytes else float("nan")
