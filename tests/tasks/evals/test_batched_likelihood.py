"""Last-word likelihood of a batch in one forward pass: the same numbers as row by row."""

from __future__ import annotations

import pytest
import torch

from model import GPT, GPTConfig, SamplingConfig, generate
from tasks.evals.batched_likelihood import batched_continuation_nll
from tasks.evals.likelihood import continuation_nll

VOCAB, CONTEXT = 300, 32


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=CONTEXT)).eval()


def ids(seed: int, n: int) -> list[int]:
    return [(seed * 37 + 11 * i) % VOCAB for i in range(n)]


def test_a_batch_of_different_lengths_matches_row_by_row(model):
    # Lengths from short to longer than the model's context (which keeps the end).
    pairs = [
        (ids(1, 3), ids(2, 1)),
        (ids(3, 20), ids(4, 3)),
        (ids(5, 9), ids(6, 2)),
        (ids(7, 40), ids(8, 4)),
        (ids(9, 1), ids(10, 5)),
        (ids(17, 30), ids(18, 2)),  # exactly the context: still one window
        (ids(19, 31), ids(20, 2)),  # one past it: cut as the harness cuts it
    ]
    batched = batched_continuation_nll(model, pairs)
    for (context, target), found in zip(pairs, batched, strict=True):
        expected = continuation_nll(model, context, target)
        assert found.nll == pytest.approx(expected.nll, rel=1e-5)
        assert (found.greedy, found.next_token) == (expected.greedy, expected.next_token)


def test_greedy_is_true_exactly_for_the_greedy_continuation(model):
    contexts = [ids(11, 6), ids(12, 15)]
    completions = generate(model, contexts, SamplingConfig(max_new_tokens=3, temperature=0))
    greedy = [c.tokens for c in completions]
    # A row padded behind a longer one still finds its own greedy continuation...
    pairs = [(ctx, target) for ctx, target in zip(contexts, greedy, strict=True)]
    assert [c.greedy for c in batched_continuation_nll(model, pairs)] == [True, True]
    # ...and one changed token is no longer greedy.
    changed = [(contexts[0], [(greedy[0][0] + 1) % VOCAB, *greedy[0][1:]]), pairs[1]]
    assert [c.greedy for c in batched_continuation_nll(model, changed)] == [False, True]


def test_a_row_does_not_depend_on_the_rest_of_its_batch(model):
    alone = batched_continuation_nll(model, [(ids(13, 5), ids(14, 2))])
    with_longer = batched_continuation_nll(
        model, [(ids(13, 5), ids(14, 2)), (ids(15, 28), ids(16, 3))]
    )
    assert with_longer[0].nll == pytest.approx(alone[0].nll, rel=1e-5)
    assert with_longer[0].next_token == alone[0].next_token


def test_empty_input_is_refused_naming_the_row(model):
    assert batched_continuation_nll(model, []) == []
    with pytest.raises(ValueError, match="row 1 has an empty target"):
        batched_continuation_nll(model, [(ids(1, 4), ids(2, 1)), (ids(3, 4), [])])
    with pytest.raises(ValueError, match="row 0 has an empty context"):
        batched_continuation_nll(model, [([], ids(2, 1))])
    with pytest.raises(ValueError, match="row 0: target of 33 tokens"):
        batched_continuation_nll(model, [(ids(1, 4), ids(2, CONTEXT + 1))])
