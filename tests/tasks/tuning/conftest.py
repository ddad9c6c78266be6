"""A tiny model that writes ship's-log entries, and comparisons that prefer one word.

The synthetic preference has a clear signal: of four continuations sampled for a prompt,
the judge picks one that mentions a whale. About one sample in ten does at the start, so
the model can learn to mention whales more often without writing anything new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from model import GPT, GPTConfig, Tokenizer, generate, load_model, load_tokenizer
from model.sampling import SamplingConfig
from tasks.tour import fit_tiny_model, learn_tokenizer
from tasks.train.style_set import style_set_text
from tasks.tuning.comparisons import Comparison

MARKER = "whale"
PROMPTS = [f"Day {n}. Wind from the" for n in range(401, 521)]


@dataclass(frozen=True)
class ShipLog:
    folder: Path
    model: GPT
    tokenizer: Tokenizer


@pytest.fixture(scope="session")
def ship_log(tmp_path_factory) -> ShipLog:
    folder = tmp_path_factory.mktemp("ship-log")
    text = style_set_text()
    learn_tokenizer(text, 512, folder / "tokenizer")
    fit_tiny_model(
        text, folder / "tokenizer", GPTConfig.preset("tiny", block_size=128), 300, folder / "model"
    )
    return ShipLog(folder / "model", load_model(folder / "model"), load_tokenizer(folder / "model"))


def sample(
    model: GPT, tokenizer: Tokenizer, prompts: list[str], per_prompt: int, seed: int
) -> list[tuple[str, ...]]:
    """`per_prompt` continuations of every prompt (32 tokens, plain sampling)."""
    rounds = []
    for i in range(per_prompt):
        completions = generate(
            model,
            [tokenizer.encode(p) for p in prompts],
            SamplingConfig(max_new_tokens=32, seed=seed + i),
            eot_token=tokenizer.eot_token,
        )
        rounds.append([tokenizer.decode(c.tokens) for c in completions])
    return list(zip(*rounds, strict=True))


def marker_frequency(model: GPT, tokenizer: Tokenizer, seed: int) -> float:
    """The share of sampled continuations that mention the marker."""
    samples = [s for row in sample(model, tokenizer, PROMPTS, 4, seed) for s in row]
    return sum(MARKER in s for s in samples) / len(samples)


def marker_comparisons(ship_log: ShipLog) -> list[Comparison]:
    """Best-of-4 comparisons where the chosen sample mentions the marker and at least one
    other does not (a prompt whose four samples all agree says nothing)."""
    comparisons = []
    for prompt, samples in zip(
        PROMPTS, sample(ship_log.model, ship_log.tokenizer, PROMPTS, 4, 0), strict=True
    ):
        marked = [i for i, s in enumerate(samples) if MARKER in s]
        if 0 < len(marked) < len(samples):
            comparisons.append(Comparison(prompt, samples, marked[0]))
    return comparisons
