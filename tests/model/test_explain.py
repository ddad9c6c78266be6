"""The arrays behind `gpt2lab explain` are the model's own numbers: attention from the
explicit path, probabilities = softmax of the logits, merges that rebuild each token,
sampling steps that draw what `generate` draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.config import GPTConfig
from model.explain import (
    attention_weights,
    bpe_merges,
    causal_mask_view,
    explain_prompt,
    next_token_table,
    sampling_steps,
    split_words,
)
from model.gpt import GPT
from model.sampling import SamplingConfig, generate, next_token_distribution
from model.tokenizer import ReferenceBPE, load_tokenizer

PROMPT = "Byte pair encoding merges frequent pairs, one token at a time."


@pytest.fixture(scope="module")
def tok(gpt2_vocab_dir):
    return load_tokenizer(gpt2_vocab_dir)


@pytest.fixture(scope="module")
def bpe(gpt2_vocab_dir):
    return ReferenceBPE(gpt2_vocab_dir)


@pytest.fixture(scope="module")
def net() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=64, n_layer=2, n_head=4, n_embd=64)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def ids(tok) -> list[int]:
    return tok.encode(PROMPT)


def test_attention_shown_is_the_explicit_paths_and_causal(net, ids):
    shown = attention_weights(net, ids)
    T = len(ids)
    assert shown.shape == (2, 4, T, T)
    explicit = net.attention_maps(torch.tensor([ids]))  # CausalSelfAttention's own weights
    for layer, weights in enumerate(explicit):
        np.testing.assert_array_equal(shown[layer], weights[0].numpy())
    np.testing.assert_allclose(shown.sum(-1), 1.0, atol=1e-5)
    above = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert (shown[..., above] == 0.0).all()  # exactly zero, not just small
    assert (shown[..., ~above] > 0.0).all()


def test_mask_view_goes_from_scores_to_the_heads_weights(net, ids):
    shown = attention_weights(net, ids)
    view = causal_mask_view(net, ids, layer=1, head=3)
    T = len(ids)
    above = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.isfinite(view.scores).all()  # before the mask: every pair has a score
    assert np.isneginf(view.masked[above]).all()
    np.testing.assert_array_equal(view.masked[~above], view.scores[~above])
    assert (view.weights[above] == 0.0).all()
    np.testing.assert_allclose(view.weights, shown[1, 3], atol=1e-6)


def test_mask_view_refuses_a_head_that_does_not_exist(net, ids):
    with pytest.raises(ValueError, match="head 4 is out of range: each layer has heads 0..3"):
        causal_mask_view(net, ids, head=4)
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        causal_mask_view(net, ids, layer=2)


@pytest.mark.parametrize("word", [" encoding", " frequent", "Byte", " tokenization", "ü€😀"])
def test_the_merges_shown_rebuild_the_token(bpe, tok, word):
    merges = bpe_merges(bpe, word)
    # The start is the word's bytes, one stand-in character each.
    assert "".join(merges.start) == "".join(bpe.byte_to_char[b] for b in word.encode())
    pieces = list(merges.start)
    for step in merges.steps:
        assert bpe.merge_rank[(step.left, step.right)] == step.rank
        assert step.left + step.right in step.pieces  # the merge made a piece
        assert "".join(step.pieces) == "".join(pieces)  # nothing lost or added
        pieces = list(step.pieces)
    ranks = [s.rank for s in merges.steps]
    assert ranks == sorted(ranks)  # best-ranked pairs first, as training learnt them
    assert list(merges.tokens) == bpe.bpe("".join(merges.start))
    assert [bpe.token_to_id[t] for t in merges.tokens] == tok.encode(word)


def test_split_words_gives_the_words_merges_stay_inside(bpe):
    assert split_words(bpe, "Hello world!") == ["Hello", " world", "!"]


def test_probabilities_shown_are_softmax_of_the_logits(net, ids):
    table = next_token_table(net, ids, k=5)
    with torch.no_grad():
        logits, _ = net(torch.tensor([ids]))
    probs = F.softmax(logits[0], dim=-1)
    top = torch.topk(probs, 5, dim=-1)
    np.testing.assert_array_equal(table.top_ids, top.indices.numpy())
    np.testing.assert_allclose(table.top_probs, top.values.numpy(), rtol=1e-5)
    for t, actual in enumerate(ids[1:]):
        assert table.actual_ids[t] == actual
        assert table.actual_probs[t] == pytest.approx(float(probs[t, actual]), rel=1e-5)
        order = torch.argsort(probs[t], descending=True).tolist()
        assert table.actual_ranks[t] == order.index(actual) + 1


def test_sampling_steps_draw_what_generate_draws(net, ids, tok):
    sampling = SamplingConfig(max_new_tokens=4, temperature=0.8, top_k=20, top_p=0.9, seed=3)
    trace = sampling_steps(net, ids, sampling, eot_token=tok.eot_token, k=8)
    expected = generate(net, [ids], sampling, eot_token=tok.eot_token)[0]
    assert trace.tokens == expected.tokens
    assert [s.finish_reason for s in trace.steps] == [None] * 3 + ["length"]
    assert "4 new tokens" in trace.stop_reason

    seq = list(ids)
    for step in trace.steps:
        with torch.no_grad():
            logits, _ = net(torch.tensor([seq]))
        before = F.softmax(logits[0, -1], dim=-1)
        np.testing.assert_allclose(step.before_probs, torch.topk(before, 8).values, rtol=1e-4)
        after = next_token_distribution(logits[0, -1:], sampling)[0]
        assert step.kept == int((after > 0).sum()) and 1 <= step.kept <= 20  # top-k 20
        shown = min(8, step.kept)
        np.testing.assert_allclose(step.after_probs, torch.topk(after, shown).values, rtol=1e-4)
        assert after[step.token] > 0  # drawn from what the filter left
        seq.append(step.token)


def test_sampling_stops_at_end_of_text_and_says_why(net, ids):
    greedy = SamplingConfig(max_new_tokens=5, temperature=0)
    first = generate(net, [ids], greedy)[0].tokens[0]
    # Call the greedy choice "end of text": the loop must stop at once, and say so.
    trace = sampling_steps(net, ids, greedy, eot_token=first)
    assert len(trace.steps) == 1 and trace.steps[0].finish_reason == "eot"
    assert trace.tokens == []
    assert "<|endoftext|>" in trace.stop_reason
    assert trace.steps[0].kept == 1 and trace.steps[0].after_probs.tolist() == [1.0]


def test_explain_prompt_gathers_every_view(net, tok, bpe):
    sampling = SamplingConfig(max_new_tokens=3, seed=0)
    ex = explain_prompt(net, tok, bpe, PROMPT, sampling, word="encoding", layer=1, head=2)
    assert ex.ids == tok.encode(PROMPT)
    assert ex.word is not None and ex.word.word == " encoding"
    assert (ex.mask.layer, ex.mask.head) == (1, 2)
    assert ex.attention.shape[:2] == (2, 4)
    assert ex.labels[ex.ids[1]] == "␣pair"
    assert all(t in ex.labels for s in ex.trace.steps for t in s.after_ids.tolist())
    assert ex.continuation == tok.decode(ex.trace.tokens)
    # No word named: the one that took the most merges.
    default = explain_prompt(net, tok, bpe, PROMPT, sampling)
    assert default.word is not None
    assert len(default.word.steps) == max(
        len(bpe_merges(bpe, w).steps) for w in split_words(bpe, PROMPT)
    )


def test_explain_prompt_names_a_word_the_prompt_lacks(net, tok, bpe):
    with pytest.raises(ValueError, match="word 'zebra' is not one of the prompt's words"):
        explain_prompt(net, tok, bpe, PROMPT, SamplingConfig(max_new_tokens=1), word="zebra")
