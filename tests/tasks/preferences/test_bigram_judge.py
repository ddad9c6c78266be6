"""The simulated judge's neutral reference: a token bigram model of a corpus, which is
neither of the compared models, prefers text that reads like that corpus."""

from __future__ import annotations

import math

import numpy as np

from tasks.preferences.judge import BigramSurprise

VOCAB = 32


class Letters:
    """A stand-in tokenizer: one token per lowercase letter or space."""

    eot_token = 0

    def encode(self, text: str) -> list[int]:
        return [1 + (ord(c) - ord("a")) if c.isalpha() else 27 for c in text.lower()]


def bigram(*texts: str) -> BigramSurprise:
    return BigramSurprise([np.array(Letters().encode(t)) for t in texts], Letters(), VOCAB)


def test_text_like_the_corpus_is_less_surprising_than_shuffled_letters():
    judge = bigram("the cat sat on the mat and the rat sat on the hat " * 20)
    fluent = judge("the cat", " sat on the mat")
    shuffled = judge("the cat", " tas no eht tma")
    assert fluent < shuffled
    # An unseen pair costs what a rare token does: finite, never infinite.
    assert math.isfinite(judge("the", " xyz"))
    assert judge("the", "") == math.inf  # nothing written: the worst answer


def test_the_score_depends_on_the_corpus_not_on_either_compared_model():
    cats = bigram("the cat sat on the mat " * 20)
    dogs = bigram("a dog dug up a log " * 20)
    assert cats("a", " cat sat") < cats("a", " dog dug")
    assert dogs("a", " dog dug") < dogs("a", " cat sat")


def test_a_mixture_weighs_a_small_corpus_like_a_big_one():
    """The pretrained model's corpus is far bigger than the fine-tuning style set: mixed
    with equal weights, text in either style reads about as plausible."""
    big, small = "the cat sat on the mat " * 200, "a dog dug up a log " * 5
    pooled = bigram(big + small)
    mixed = bigram(big, small)
    cat, dog = " cat sat on the mat", " dog dug up a log"
    assert pooled("a", dog) - pooled("a", cat) > 2 * abs(mixed("a", dog) - mixed("a", cat))
