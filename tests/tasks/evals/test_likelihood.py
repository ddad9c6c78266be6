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
from tasks.evals.likelihood import continuation_nll, encode_pair, rolling_nll
from tasks.evals.output_cache import OutputCache, output_key
from tasks.evals.registry import get_tasks
from tasks.evals.runner import (
    cache_text,
    ends_a_word,
    evaluate_task,
    measurement_from_text,
    measurement_to_text,
)
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
    keys = [
        output_key("old", lambada.name, lambada.version, cache_text(lambada, row, p), settings)
        for row, p in zip(rows, prompts, strict=True)
    ]
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


EOT = 299  # a token of the small test vocabulary standing for <|endoftext|>


def test_disjoint_windows_equal_lm_evaluation_harness_rolling_windows(model):
    """stride = window with an <|endoftext|> prefix reads exactly the windows of the
    harness's `loglikelihood_rolling` (its own window function, scored with our model)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    window = model.config.block_size
    for length in (1, 20, 32, 33, 70, 100):  # shorter than, equal to, past a window
        ids = [(11 * i + 3) % 290 for i in range(length)]
        expected, count = 0.0, 0
        for context, predicted in map(
            make_disjoint_window,
            get_rolling_token_windows(ids, prefix_token=EOT, max_seq_len=window, context_len=1),
        ):
            # As the harness's _loglikelihood_tokens: the last window+1 tokens, minus one.
            inputs = (context + predicted)[-(window + 1) :][:-1]
            logits, _ = model(torch.tensor([inputs]))
            log_probs = F.log_softmax(logits[0, -len(predicted) :], dim=-1)
            expected -= log_probs.gather(1, torch.tensor(predicted)[:, None]).sum().item()
            count += len(predicted)
        nll, tokens = rolling_nll(model, ids, window, stride=window, prefix_token=EOT)
        assert tokens == count == length  # every token, the first one predicted from EOT
        assert nll == pytest.approx(expected, rel=1e-5)


def test_with_stride_1_every_token_sees_a_full_window_of_context(model):
    """The promise of a small stride, checked token by token: -log p(token | up to
    `window` tokens before it), with nothing shared between predictions."""
    window, ids = 8, [(5 * i + 1) % 290 for i in range(30)]
    expected = 0.0
    for position in range(1, len(ids)):
        inputs = ids[max(0, position - window) : position]
        logits, _ = model(torch.tensor([inputs]))
        expected -= F.log_softmax(logits[0, -1], dim=-1)[ids[position]].item()
    nll, tokens = rolling_nll(model, ids, window, stride=1)
    assert tokens == len(ids) - 1 and nll == pytest.approx(expected, rel=1e-5)
    # More context per token than disjoint windows give: a different total.
    assert rolling_nll(model, ids, window, stride=window)[0] != pytest.approx(nll, rel=1e-4)


def test_a_stride_outside_the_window_is_refused(model):
    with pytest.raises(ValueError, match=r"stride must be between 1 and the window \(32\), got 0"):
        rolling_nll(model, [1, 2, 3], window=32, stride=0)


def test_a_stride_override_is_a_new_measurement_not_a_cache_hit(tmp_path, gpt2_vocab_dir):
    """`dataclasses.replace(task, stride=...)` (what the evaluate flow offers) reads the
    text again: its windowing is part of the output cache's key and of the settings."""
    (task,) = get_tasks(["wikitext2-perplexity"])
    torch.manual_seed(0)
    tiny = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    with OutputCache(tmp_path / "cache.db") as cache:
        disjoint = evaluate_task(task, tiny, tokenizer, "tiny", cache, limit=2)
        overlapping_task = dataclasses.replace(task, stride=16)
        overlapping = evaluate_task(overlapping_task, tiny, tokenizer, "tiny", cache, limit=2)
        again = evaluate_task(overlapping_task, tiny, tokenizer, "tiny", cache, limit=2)
    assert (overlapping.generated, overlapping.from_cache) == (2, 0)
    assert (again.generated, again.from_cache) == (0, 2)
    assert overlapping.settings["stride"] == 16 and disjoint.settings["stride"] is None
    assert overlapping.scores["word_perplexity"] != disjoint.scores["word_perplexity"]


def test_context_and_target_are_split_as_the_harness_splits_them(gpt2_vocab_dir):
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    context, target = encode_pair(tokenizer, "He played the", " piano")
    assert tokenizer.decode(context) == "He played the" and tokenizer.decode(target) == " piano"
    # Spaces at the end of the context belong to the target's first token.
    context, target = encode_pair(tokenizer, "He played the ", "piano")
    assert tokenizer.decode(target) == " piano" and target == tokenizer.encode(" piano")
    # An empty context is <|endoftext|>.
    assert encode_pair(tokenizer, "", " piano")[0] == [tokenizer.eot_token]


@pytest.mark.parametrize(
    ("written_next", "ends"),
    [(" the", True), (".", True), (",", True), ("\n", True), ("<|endoftext|>", True),
     ("'s", False), ("-like", False), ("s", False), ("ist", False), ("2", False), ("é", False)],
)  # fmt: skip
def test_a_word_ends_unless_it_goes_on(written_next, ends, gpt2_vocab_dir):
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    if written_next == "<|endoftext|>":
        token = tokenizer.eot_token
    else:
        (token,) = tokenizer.encode(written_next)[:1]
    assert ends_a_word(tokenizer, token) is ends


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_likelihood_tasks_run_on_the_models_device(gpt2_vocab_dir):
    """A model on the GPU is measured there, with the figures it gives on the CPU."""
    ppl_task, lambada = get_tasks(["wikitext2-perplexity", "lambada"])
    torch.manual_seed(0)
    tiny = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    on_cpu = [evaluate_task(t, tiny, tokenizer, "tiny").scores for t in (ppl_task, lambada)]
    tiny.to("cuda")
    on_gpu = [evaluate_task(t, tiny, tokenizer, "tiny").scores for t in (ppl_task, lambada)]
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        assert gpu == pytest.approx(cpu, rel=1e-3)


@pytest.mark.parametrize("stride", [0, -4, 2.5])
def test_a_bad_stride_override_is_refused_with_the_task_named(stride):
    (task,) = get_tasks(["wikitext2-perplexity"])
    with pytest.raises(ValueError, match=r"task wikitext2-perplexity: stride must be a positive"):
        dataclasses.replace(task, stride=stride)
