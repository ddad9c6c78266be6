"""Perplexity with a sliding window, last-word likelihood, and the tasks built on them."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig, SamplingConfig, generate, load_tokenizer
from tasks.evals.data import task_rows
from tasks.evals.likelihood import continuation_nll, rolling_nll
from tasks.evals.output_cache import OutputCache, output_key
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task, measurement_from_text, measurement_to_text
from tasks.evals.task import ContinuationLikelihood, TextLikelihood


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
    nll, is_greedy, _ = continuation_nll(model, context, greedy.tokens)
    assert is_greedy
    ids = context + greedy.tokens
    logits, _ = model(torch.tensor([ids[:-1]]))
    log_probs = F.log_softmax(logits[0], dim=-1)
    expected = -(log_probs[-2, ids[-2]] + log_probs[-1, ids[-1]]).item()
    assert nll == pytest.approx(expected, rel=1e-5)
    other = [(greedy.tokens[0] + 1) % 300, greedy.tokens[1]]
    assert not continuation_nll(model, context, other)[1]


def test_the_token_after_the_target_is_the_models_next_greedy_choice(model):
    context = [1, 2, 3, 4, 5]
    (greedy,) = generate(model, [context], SamplingConfig(max_new_tokens=3, temperature=0))
    *_, next_token = continuation_nll(model, context, greedy.tokens[:2])
    assert next_token == greedy.tokens[2]
    # A context longer than the window: cut as the harness cuts it, still the next choice.
    long_context = [(5 * i) % 300 for i in range(40)]
    (far,) = generate(model, [long_context[-29:]], SamplingConfig(max_new_tokens=3, temperature=0))
    *_, next_token = continuation_nll(model, long_context, far.tokens[:2])
    assert next_token == far.tokens[2]


def test_after_an_endoftext_prefix_every_token_is_scored(model):
    ids = list(range(5, 25))
    nll, tokens = rolling_nll(model, ids, window=32, stride=32, prefix_token=0)
    assert tokens == 20 and nll == pytest.approx(direct_nll(model, [0, *ids]), rel=1e-5)


def test_a_smaller_stride_gives_tokens_more_context(model):
    ids = [(7 * i) % 300 for i in range(100)]
    disjoint, n1 = rolling_nll(model, ids, window=32, stride=32, prefix_token=0)
    overlapping, n2 = rolling_nll(model, ids, window=32, stride=8, prefix_token=0)
    assert n1 == n2 == 100  # the same tokens, each scored once...
    assert disjoint != pytest.approx(overlapping, rel=1e-4)  # ...with different contexts


def test_perplexity_and_lambada_tasks_run_and_cache(tmp_path, gpt2_vocab_dir):
    torch.manual_seed(0)
    tiny = GPT(GPTConfig.preset("tiny")).eval()
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    ppl_task, lambada = get_tasks(["wikitext2-perplexity", "lambada"])
    with OutputCache(tmp_path / "cache.db") as cache:
        ppl = evaluate_task(ppl_task, tiny, tokenizer, "tiny", cache)
        # An untrained model is close to a uniform guess over GPT-2's vocabulary.
        assert 0.3 * 50257 < ppl.scores["token_perplexity"] < 3 * 50257
        # Every token of each detokenised text is scored once (after <|endoftext|>); words
        # and bytes are the original text's, as lm-evaluation-harness counts them.
        pages = [row["page"] for row in task_rows(ppl_task)]
        tokens = sum(len(tokenizer.encode(ppl_task.prompt({"page": p}, []))) for p in pages)
        utf8_bytes = sum(len(page.encode("utf-8")) for page in pages)
        words = sum(len(re.split(r"\s+", page)) for page in pages)
        nll = math.log(ppl.scores["token_perplexity"]) * tokens
        assert ppl.scores["bits_per_byte"] == pytest.approx(nll / math.log(2) / utf8_bytes)
        assert ppl.scores["word_perplexity"] == pytest.approx(math.exp(nll / words))
        assert ppl.rows == 3 and set(ppl.intervals) == set(ppl.scores)
        first = evaluate_task(lambada, tiny, tokenizer, "tiny", cache)
        assert 0.0 <= first.scores["accuracy"] <= 1.0 and first.generated == 6
        again = evaluate_task(lambada, tiny, tokenizer, "tiny", cache)
        assert again.from_cache == 6 and again.scores == first.scores


def test_likelihood_tasks_score_typed_measurements(monkeypatch, tmp_path, gpt2_vocab_dir):
    """`score` receives dataclasses, never the cache's JSON text."""
    ppl_task, lambada = get_tasks(["wikitext2-perplexity", "lambada"])
    received = {}

    def spy(task):
        def score(measured, references, rows):
            received[task.name] = measured
            return task.score(measured, references, rows)

        return score

    torch.manual_seed(0)
    tiny = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    for task in (ppl_task, lambada):
        spied = dataclasses.replace(task, score=spy(task))
        with OutputCache(tmp_path / "cache.db") as cache:  # fresh, then cached
            assert evaluate_task(spied, tiny, tokenizer, "tiny", cache, limit=2).generated == 2
            evaluate_task(spied, tiny, tokenizer, "tiny", cache, limit=2)
    assert [type(m) for m in received["wikitext2-perplexity"]] == [TextLikelihood] * 2
    assert [type(m) for m in received["lambada"]] == [ContinuationLikelihood] * 2
    assert all(isinstance(m.greedy, bool) for m in received["lambada"])


def test_measurements_are_cached_as_json_and_read_back_exactly():
    """A measurement is stored as its fields in JSON; a float comes back bit for bit."""
    nll = 0.1 + 0.2  # 0.30000000000000004: a float whose shortest exact form is long
    text = TextLikelihood(nll=nll, tokens=12, bytes=57)
    assert measurement_to_text(text) == '{"nll": 0.30000000000000004, "tokens": 12, "bytes": 57}'
    word = ContinuationLikelihood(nll=3.25, greedy=True, word_ends=False)
    assert measurement_to_text(word) == '{"nll": 3.25, "greedy": true, "word_ends": false}'
    assert measurement_from_text("perplexity", measurement_to_text(text)) == text
    assert measurement_from_text("loglikelihood", measurement_to_text(word)) == word


def test_cached_measurements_are_scored_without_the_model(tmp_path, gpt2_vocab_dir):
    (lambada,) = get_tasks(["lambada"])
    rows = task_rows(lambada, limit=2)
    prompts = [lambada.prompt(row, []) for row in rows]
    settings = dataclasses.asdict(lambada.generation)
    keys = [output_key("old", lambada.name, lambada.version, p, settings) for p in prompts]
    with OutputCache(tmp_path / "cache.db") as cache:
        stored = [
            '{"nll": 2.0, "greedy": true, "word_ends": false}',
            '{"nll": 4.0, "greedy": false, "word_ends": false}',
        ]
        cache.put_many(zip(keys, stored, strict=True))
        model = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
        tokenizer = load_tokenizer(gpt2_vocab_dir)
        result = evaluate_task(lambada, model, tokenizer, "old", cache, limit=2)
    assert (result.generated, result.from_cache) == (0, 2)
    assert result.scores == {
        "accuracy": 0.5,
        "accuracy_whole_word": 0.0,
        "perplexity": math.exp(3.0),
    }
