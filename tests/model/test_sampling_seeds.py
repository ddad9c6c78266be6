"""Per-row seeds: a row's sample depends on its prompt and its seed, not on its batch."""

from __future__ import annotations

import pytest
import torch

from model import GPT, GPTConfig, SamplingConfig, generate

SAMPLED = SamplingConfig(max_new_tokens=20, temperature=1.0, top_k=20)
PROMPTS = [[5, 17, 42, 8, 99, 3, 61], [40, 11], [15, 11, 95, 7], [2]]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=101)).eval()


def _tokens(model: GPT, prompts, seeds) -> list[list[int]]:
    return [c.tokens for c in generate(model, prompts, SAMPLED, seeds=seeds)]


def test_a_row_samples_the_same_alone_or_padded_in_any_batch(model):
    seeds = [11, 22, 33, 44]
    together = _tokens(model, PROMPTS, seeds)
    alone = [_tokens(model, [p], [s])[0] for p, s in zip(PROMPTS, seeds, strict=True)]
    assert together == alone
    # Reversed: every row now sits behind different padding, next to other rows.
    assert _tokens(model, PROMPTS[::-1], seeds[::-1]) == together[::-1]


def test_different_seeds_give_different_streams_for_the_same_prompt(model):
    prompt = PROMPTS[0]
    same = _tokens(model, [prompt, prompt], [7, 7])
    assert same[0] == same[1]
    different = _tokens(model, [prompt, prompt], [7, 8])
    assert different[0] != different[1]


def test_one_shared_seed_still_works_without_per_row_seeds(model):
    seeded = SamplingConfig(max_new_tokens=20, top_k=20, seed=3)
    first = [c.tokens for c in generate(model, PROMPTS, seeded)]
    assert [c.tokens for c in generate(model, PROMPTS, seeded)] == first


def test_one_seed_per_prompt_is_required(model):
    with pytest.raises(ValueError, match="got 1 seeds for 4 prompts"):
        generate(model, PROMPTS, SAMPLED, seeds=[1])
