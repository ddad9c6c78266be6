"""Perplexity with a sliding window, last-word likelihood, and the tasks built on them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig, SamplingConfig, generate, load_tokenizer
from tasks.evals.likelihood import continuation_nll, rolling_nll
from tasks.evals.output_cache import OutputCache
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=300, block_size=32)).eval()


def direct_nll(model: GPT, ids: list[int]) -> float:
    logits, _ = model(torch.tensor([ids[:-1]]))
    return F.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum").item()


def test_a_text_within_one_window_gets_the_plain_loss(model):
    ids = list(range(5, 25))
    nll, tokens = rolling_nll(model, ids, window=32, stride=16)
    assert tokens == 19 and nll == pytest.approx(direct_nll(model, ids), rel=1e-5)


def test_a_long_text_scores_every_token_once_with_context(model):
    ids = [(7 * i) % 300 for i in range(100)]
    nll, tokens = rolling_nll(model, ids, window=32, stride=8)
    assert tokens == 99
    # The first 32 tokens alone carry only part of the total.
    first, _ = rolling_nll(model, ids[:32], window=32, stride=8)
    assert nll > first > 0


def test_continuation_nll_and_greedy_match(model):
    context = [1, 2, 3, 4, 5]
    (greedy,) = generate(model, [context], SamplingConfig(max_new_tokens=2, temperature=0))
    nll, is_greedy = continuation_nll(model, context, greedy.tokens)
    assert is_greedy
    ids = context + greedy.tokens
    logits, _ = model(torch.tensor([ids[:-1]]))
    log_probs = F.log_softmax(logits[0], dim=-1)
    expected = -(log_probs[-2, ids[-2]] + log_probs[-1, ids[-1]]).item()
    assert nll == pytest.approx(expected, rel=1e-5)
    other = [(greedy.tokens[0] + 1) % 300, greedy.tokens[1]]
    assert not continuation_nll(model, context, other)[1]


def test_perplexity_and_lambada_tasks_run_and_cache(tmp_path, gpt2_vocab_dir):
    torch.manual_seed(0)
    tiny = GPT(GPTConfig.preset("tiny")).eval()
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    ppl_task, lambada = get_tasks(["wikitext2-perplexity", "lambada"])
    with OutputCache(tmp_path / "cache.db") as cache:
        ppl = evaluate_task(ppl_task, tiny, tokenizer, "tiny", cache)
        # An untrained model is close to a uniform guess over GPT-2's vocabulary.
        assert 0.3 * 50257 < ppl.scores["perplexity"] < 3 * 50257
        assert ppl.scores["bits_per_byte"] == pytest.approx(
            math.log2(ppl.scores["perplexity"]) * _tokens(ppl) / _bytes(ppl), rel=1e-6
        )
        first = evaluate_task(lambada, tiny, tokenizer, "tiny", cache)
        assert 0.0 <= first.scores["accuracy"] <= 1.0 and first.generated == 6
        again = evaluate_task(lambada, tiny, tokenizer, "tiny", cache)
        assert again.from_cache == 6 and again.scores == first.scores


def _tokens(result) -> int:
    import json

    return sum(json.loads(e["raw_output"])["tokens"] for e in result.examples)


def _bytes(result) -> int:
    import json

    return sum(json.loads(e["raw_output"])["bytes"] for e in result.examples)
