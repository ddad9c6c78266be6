"""Sampling the continuations that people compare: one per prompt from a model, with
settings and a seed that are recorded with the batch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from model import GPT, Tokenizer
from model.sampling import SamplingConfig, generate


@dataclass(frozen=True)
class ContinuationSettings:
    """How continuations are sampled. The defaults are those of the GPT-2 paper's samples
    (top-k 40 at temperature 1), with continuations short enough to read side by side."""

    max_new_tokens: int = 48
    temperature: float = 1.0
    top_k: int | None = 40
    top_p: float | None = None
    batch_size: int = 8
    min_new_tokens: int = 0  # no end-of-text before this many tokens (see SamplingConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def sample_continuations(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: list[str],
    settings: ContinuationSettings,
    seed: int,
) -> list[str]:
    """One continuation (the new text only, without the prompt) for every prompt.

    Every model of a batch is called with the same `seed`, and prompts are batched the
    same way for each, so the models draw the same random numbers: neither is luckier.
    A prompt longer than the model's context keeps its end (what the text continues from).
    """
    room = model.config.block_size - settings.max_new_tokens
    if room < 1:
        raise ValueError(
            f"max_new_tokens={settings.max_new_tokens} leaves no room for a "
            f"prompt in a context of {model.config.block_size} tokens"
        )
    texts: list[str] = []
    for start in range(0, len(prompts), settings.batch_size):
        chunk = prompts[start : start + settings.batch_size]
        sampling = SamplingConfig(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            seed=seed + start,
            min_new_tokens=settings.min_new_tokens,
        )
        ids = [tokenizer.encode(prompt)[-room:] for prompt in chunk]
        completions = generate(model, ids, sampling, eot_token=tokenizer.eot_token)
        texts += [tokenizer.decode(c.tokens) for c in completions]
    return texts
