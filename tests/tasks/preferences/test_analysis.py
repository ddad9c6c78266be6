"""Win rates, intervals, Bradley-Terry, position bias and agreement on known votes."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from tasks.preferences.analysis import (
    Vote,
    bootstrap_intervals,
    bradley_terry,
    pairwise_agreement,
    position_bias,
    wilson_interval,
    win_rate,
)


def votes(a_wins: int, b_wins: int, ties: int = 0, both_bad: int = 0, a="A", b="B") -> list[Vote]:
    """Votes with sides alternating, so each model sits left half the time."""
    made = []
    outcomes = ["a"] * a_wins + ["b"] * b_wins + ["tie"] * ties + ["both_bad"] * both_bad
    for i, outcome in enumerate(outcomes):
        left, right = (a, b) if i % 2 == 0 else (b, a)
        if outcome in ("tie", "both_bad"):
            choice = outcome
        else:
            winner = a if outcome == "a" else b
            choice = "left" if winner == left else "right"
        made.append(Vote(f"item{i}", f"ann{i % 3}", left, right, choice))
    return made


def test_wilson_interval_matches_scipy():
    for k, n in [(8, 10), (0, 5), (50, 50), (37, 120)]:
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((expected.low, expected.high), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_ties_count_half_and_both_bad_is_left_out():
    result = win_rate(votes(30, 10, ties=10, both_bad=7), "A", "B")
    assert (result.wins, result.losses, result.ties, result.both_bad) == (30, 10, 10, 7)
    assert result.rate == pytest.approx(35 / 50)
    assert (result.low, result.high) == pytest.approx(wilson_interval(35, 50))
    mirror = win_rate(votes(30, 10, ties=10), "B", "A")
    assert mirror.rate == pytest.approx(1 - result.rate)
    assert math.isnan(win_rate([], "A", "B").rate)


def test_bradley_terry_recovers_win_probabilities_and_order():
    strengths = bradley_terry(votes(300, 100))
    difference = strengths["A"] - strengths["B"]
    assert 1 / (1 + math.exp(-difference)) == pytest.approx(0.75, abs=0.01)
    three = votes(80, 20, a="A", b="B") + votes(80, 20, a="B", b="C") + votes(90, 10, a="A", b="C")
    order = sorted(bradley_terry(three).items(), key=lambda kv: -kv[1])
    assert [model for model, _ in order] == ["A", "B", "C"]
    assert sum(bradley_terry(three).values()) == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_intervals_are_repeatable_and_cover_the_estimate():
    three = votes(60, 40, a="A", b="B") + votes(70, 30, a="B", b="C")
    first = bootstrap_intervals(three, rounds=50, seed=3)
    assert first == bootstrap_intervals(three, rounds=50, seed=3)
    estimate = bradley_terry(three)
    for model, (low, high) in first.items():
        assert low <= estimate[model] <= high


def test_position_bias_is_tested_against_a_fair_coin():
    biased = [Vote(f"i{n}", "x", "A", "B", "left" if n < 70 else "right") for n in range(100)]
    result = position_bias(biased)
    assert (result.left_wins, result.decided, result.left_share) == (70, 100, 0.7)
    assert result.p_value == pytest.approx(binomtest(70, 100, 0.5).pvalue)
    assert position_bias(votes(50, 50)).p_value > 0.5


def test_agreement_compares_preferred_models_not_sides():
    same_item = [
        Vote("q", "ann1", "A", "B", "left"),
        Vote("q", "ann2", "B", "A", "right"),
        Vote("q", "ann3", "A", "B", "right"),
    ]
    agreement, pairs = pairwise_agreement(same_item)
    assert pairs == 3 and agreement == pytest.approx(1 / 3)
