"""Scoring text by its probability under the model, for perplexity and LAMBADA-style tasks.

Perplexity asks how surprised the model is by held-out text: exp of the mean negative
log-likelihood per unit (token, word or byte). A text longer than the model's context is
read with a sliding window: `stride` new tokens at a time, each chunk with the `window`
tokens before it, so every token is scored once, with as much context as the stride
allows (a smaller stride: more context per token, a lower perplexity, more compute).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from model import GPT, Tokenizer


@torch.no_grad()
def rolling_nll(
    model: GPT, ids: list[int], window: int, stride: int, prefix_token: int | None = None
) -> tuple[float, int]:
    """Sum of -log p(token | up to `window` tokens before it), and how many tokens that is.

    The tokens are predicted `stride` at a time; each chunk is read with the `window`
    tokens that end at it, so every token is scored once, with at least `window - stride`
    tokens of context (except near the start). With `prefix_token` (<|endoftext|>) the
    text is read as if it followed one, so its first token is scored too; without it the
    first token has no context and is skipped.

    `stride == window` with the <|endoftext|> prefix is lm-evaluation-harness's
    `loglikelihood_rolling`: disjoint windows, the last one reaching back a full window.
    """
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    sequence = ([prefix_token] if prefix_token is not None else []) + list(ids)
    device = _device(model)
    total, scored = 0.0, 0
    first = 1  # sequence[0] is never predicted: nothing comes before it
    for chunk_start in range(first, len(sequence), stride):
        chunk_end = min(chunk_start + stride, len(sequence))
        begin = max(0, chunk_end - 1 - window)  # the window's input: sequence[begin:end-1]
        inputs = torch.tensor([sequence[begin : chunk_end - 1]], device=device)
        logits, _ = model(inputs)
        log_probs = F.log_softmax(logits[0].float(), dim=-1)
        # Position i of the input predicts sequence[begin + i + 1]; keep this chunk's.
        targets = torch.tensor(sequence[chunk_start:chunk_end], device=device)
        picked = log_probs[chunk_start - begin - 1 :].gather(1, targets.unsqueeze(1))
        total -= picked.sum().item()
        scored += chunk_end - chunk_start
    return total, scored


def encode_pair(tokenizer: Tokenizer, context: str, target: str) -> tuple[list[int], list[int]]:
    """Context and target as token ids, split the way lm-evaluation-harness splits them:
    spaces at the end of the context move to the target (a GPT-2 token carries its leading
    space), then the whole text is encoded and cut after the context's tokens, so the
    target's tokens are those of running text. An empty context becomes <|endoftext|>, so
    the target's first token has something to follow."""
    if not context:
        return [tokenizer.eot_token], tokenizer.encode(target)
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, target = context[:-spaces], context[-spaces:] + target
    context_ids = tokenizer.encode(context)
    return context_ids, tokenizer.encode(context + target)[len(context_ids) :]


class Continuation(NamedTuple):
    """How the model reads a target after a context."""

    nll: float  # -log p(target | context), natural log, summed over the target's tokens
    greedy: bool  # every target token was the most likely one at its position
    next_token: int  # the most likely token after the target


@torch.no_grad()
def continuation_nll(model: GPT, context: list[int], target: list[int]) -> Continuation:
    """-log p(target | context); whether greedy decoding would have produced exactly
    `target` (each of its tokens the most likely at its position); and the most likely
    token after the target (does the model end the word there?).

    The context is cut as lm-evaluation-harness cuts it: the last `block_size + 1` tokens
    of context + target, the final one only predicted."""
    window = model.config.block_size
    device = _device(model)
    ids = context + target
    fits = len(ids) <= window  # then one forward also predicts the token after the target
    inputs = ids if fits else ids[-(window + 1) : -1]
    logits, _ = model(torch.tensor([inputs], device=device))
    positions = logits[0, -len(target) - 1 : -1] if fits else logits[0, -len(target) :]
    log_probs = F.log_softmax(positions.float(), dim=-1)
    wanted = torch.tensor(target, device=device)
    nll = -log_probs.gather(1, wanted.unsqueeze(1)).sum().item()
    greedy = bool(torch.equal(log_probs.argmax(dim=-1), wanted))
    if not fits:  # the token after the target needs a window that ends with the target
        logits, _ = model(torch.tensor([ids[-window:]], device=device))
    return Continuation(nll, greedy, int(logits[0, -1].argmax().item()))


def _device(model: GPT) -> torch.device:
    """Where the model's weights are: inputs go there too (CPU or GPU alike)."""
    return next(model.parameters()).device


def perplexity(nll: float, tokens: int) -> float:
    return math.exp(nll / tokens) if tokens else float("nan")


def bits_per_byte(nll: float, utf8_bytes: int) -> float:
    """Total information in bits over the text's bytes: comparable across tokenizers,
    unlike perplexity per token."""
    return nll / math.log(2) / utf8_bytes if utf8_bytes else float("nan")
