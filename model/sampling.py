"""Sampling text from a GPT: one token at a time, each conditioned on all before it.

The loop: run the prompt through the model once (filling the KV cache), then repeatedly
  1. take the logits of the last position,
  2. turn them into a distribution (temperature, top-k, top-p),
  3. pick a token (the most likely one when greedy, else a random draw),
  4. feed only that token back in: the cache already holds everything before it.

Random draws come from `SamplingConfig.seed` (one generator for the whole batch), or from
per-row `seeds`: then every row has a generator of its own and draws only from it, so a
row's text depends on its prompt and its seed, never on which other prompts share its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from model.gpt import GPT

FinishReason = Literal["eot", "stop_string", "length"]


@dataclass(frozen=True)
class SamplingConfig:
    """How to choose each next token.

    temperature 0 means greedy (always the most likely token). Otherwise logits are divided
    by the temperature (<1 sharpens, >1 flattens), then optionally cut to the `top_k` most
    likely tokens and/or the smallest set whose probabilities add up to `top_p`.
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    # The end-of-text token cannot be chosen before this many new tokens (as transformers'
    # `min_new_tokens`): a small model often ends a continuation at once, leaving "." or
    # nothing for a reader to judge.
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be between 0 and max_new_tokens "
                f"({self.max_new_tokens}), got {self.min_new_tokens}"
            )
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class TokenEvent:
    """One chosen token of one sequence, as it is produced (for streaming)."""

    row: int  # which prompt of the batch
    token: int
    probability: float  # the model's probability of this token (temperature 1, no cut-off)
    alternatives: list[tuple[int, float]] = field(default_factory=list)  # top ids and probs
    finish_reason: FinishReason | None = None  # set on a sequence's last event


@dataclass
class Completion:
    tokens: list[int]  # the new tokens, without the prompt and without <|endoftext|>
    finish_reason: FinishReason


def next_token_distribution(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """(B, V) logits -> (B, V) probabilities after temperature, top-k and top-p."""
    logits = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < logits.size(-1):
        kth_best = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if sampling.top_p is not None and sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        # Drop a token when the tokens ranked above it already reach top_p
        # (so the most likely token always stays).
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def _left_pad(prompts: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths, padding on the left so every prompt ends at the
    same column: then "the next position" is the same column for the whole batch."""
    width = max(len(p) for p in prompts)
    idx = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {row} is empty: give at least one token")
        idx[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return idx.to(device), mask.to(device)


def stream(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig = SamplingConfig(),
    *,
    eot_token: int | None = None,
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    alternatives: int = 0,
    seeds: Sequence[int] | None = None,
) -> Iterator[TokenEvent]:
    """Yield each new token of each prompt as soon as it is chosen.

    A sequence stops at `eot_token` (not yielded as text: its event has
    finish_reason="eot"), when its decoded continuation contains one of `stop_strings`
    (needs `decode`), or after `sampling.max_new_tokens`. `seeds`, one per prompt, give
    each row its own random generator (`sampling.seed` is then unused). Bad requests are
    refused here, before the first token, not halfway through the stream.
    """
    if stop_strings and decode is None:
        raise ValueError("stop_strings need a decode function to read the generated text")
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts: give one per prompt")
    idx, mask = _left_pad(prompts, model.transformer.wte.weight.device)
    total = idx.size(1) + sampling.max_new_tokens
    if total > model.config.block_size:
        raise ValueError(
            f"longest prompt ({idx.size(1)} tokens) + max_new_tokens "
            f"({sampling.max_new_tokens}) = {total} exceeds the model's context "
            f"(block_size={model.config.block_size})"
        )
    draw = _sampler(sampling, seeds, idx.device)
    return _sample(model, idx, mask, sampling, draw, eot_token, stop_strings, decode, alternatives)


Draw = Callable[[torch.Tensor], torch.Tensor]  # (B, V) probabilities -> (B,) chosen ids


def _sampler(sampling: SamplingConfig, seeds: Sequence[int] | None, device) -> Draw:
    """How the loop draws the next tokens from their distributions.

    One generator for the batch (`sampling.seed`, or torch's global one when None): rows
    take turns on it, so a row's draws depend on its neighbours. With `seeds`, each row
    draws from a generator of its own, created on the model's device.
    """
    if seeds is None:
        generator = None
        if sampling.seed is not None:
            generator = torch.Generator(device=device).manual_seed(sampling.seed)
        return lambda probs: torch.multinomial(probs, 1, generator=generator).squeeze(1)

    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def draw_per_row(probs: torch.Tensor) -> torch.Tensor:
        # One draw per row from that row's generator: every row consumes the same amount
        # of randomness per step, whatever the batch holds. Rows are sliced as (1, V):
        # multinomial takes its fast path on 2-D input (on 1-D it is about 4x slower).
        rows = [
            torch.multinomial(probs[row : row + 1], 1, generator=generator)
            for row, generator in enumerate(generators)
        ]
        return torch.cat(rows).squeeze(1)

    return draw_per_row


@torch.no_grad()
def _sample(model: GPT, idx: torch.Tensor, mask: torch.Tensor, *args) -> Iterator[TokenEvent]:
    was_training = model.training
    model.eval()  # no dropout while sampling; the caller's mode is restored at the end
    try:
        yield from _sampling_loop(model, idx, mask, *args)
    finally:
        model.train(was_training)


def _sampling_loop(
    model: GPT,
    idx: torch.Tensor,
    mask: torch.Tensor,
    sampling: SamplingConfig,
    draw: Draw,
    eot_token: int | None,
    stop_strings: Sequence[str],
    decode: Callable[[list[int]], str] | None,
    alternatives: int,
) -> Iterator[TokenEvent]:
    """The loop of the module docstring: prefill the cache, then one token per step."""
    batch, prompt_width = idx.shape
    total = prompt_width + sampling.max_new_tokens

    caches = model.new_kv_caches(batch, total)
    padded = bool((mask == 0).any())
    generated: list[list[int]] = [[] for _ in range(batch)]
    active = [True] * batch
    step_input = idx

    for step in range(sampling.max_new_tokens):
        hidden, _ = model.hidden_states(
            step_input, attention_mask=mask if padded else None, kv_caches=caches
        )
        logits = model.lm_head(hidden[:, -1, :]).float()  # only the last position matters
        choosable = logits
        if eot_token is not None and step < sampling.min_new_tokens:
            choosable = logits.clone()
            choosable[:, eot_token] = float("-inf")  # too early to stop
        if sampling.greedy:
            next_ids = choosable.argmax(dim=-1)
        else:
            next_ids = draw(next_token_distribution(choosable, sampling))

        model_probs = F.softmax(logits, dim=-1)
        chosen_probs = model_probs.gather(1, next_ids.unsqueeze(1)).squeeze(1).tolist()
        top = torch.topk(model_probs, alternatives, dim=-1) if alternatives else None
        last_step = step == sampling.max_new_tokens - 1

        for row, token in enumerate(next_ids.tolist()):
            if not active[row]:
                continue
            reason: FinishReason | None = None
            if token == eot_token:
                reason = "eot"
            else:
                generated[row].append(token)
                if stop_strings and any(s in decode(generated[row]) for s in stop_strings):
                    reason = "stop_string"
                elif last_step:
                    reason = "length"
            alts = []
            if top is not None:
                alts = list(zip(top.indices[row].tolist(), top.values[row].tolist(), strict=True))
            yield TokenEvent(row, token, chosen_probs[row], alts, reason)
            if reason is not None:
                active[row] = False
        if not any(active):
            return

        # Finished rows keep decoding (batch shapes stay fixed) but nobody reads them.
        step_input = next_ids.unsqueeze(1)
        if padded:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)


def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    sampling: SamplingConfig = SamplingConfig(),
    *,
    eot_token: int | None = None,
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Completion]:
    """Sample a continuation for every prompt (a batch of token-id lists); `seeds`, one
    per prompt, make each row's sample independent of the rest of the batch."""
    tokens: list[list[int]] = [[] for _ in prompts]
    reasons: list[FinishReason] = ["length"] * len(prompts)
    events = stream(
        model,
        prompts,
        sampling,
        eot_token=eot_token,
        stop_strings=stop_strings,
        decode=decode,
        seeds=seeds,
    )
    for event in events:
        if event.finish_reason != "eot":
            tokens[event.row].append(event.token)
        if event.finish_reason is not None:
            reasons[event.row] = event.finish_reason
    return [Completion(t, r) for t, r in zip(tokens, reasons, strict=True)]


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """The text up to (not including) the first stop string it contains."""
    cut = min((text.find(s) for s in stop_strings if s in text), default=-1)
    return text if cut < 0 else text[:cut]
