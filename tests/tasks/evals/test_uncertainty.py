"""Bootstrap intervals and paired comparisons: the numbers a user reads next to a score."""

from __future__ import annotations

import math
import random

import pytest

from tasks.evals.uncertainty import bootstrap_intervals, paired_bootstrap


def mean_of(values: list[float]):
    return lambda indices: {"mean": sum(values[i] for i in indices) / len(indices)}


def test_interval_of_an_accuracy_matches_the_normal_approximation():
    rng = random.Random(0)
    hits = [float(rng.random() < 0.5) for _ in range(400)]
    p = sum(hits) / len(hits)
    (interval,) = bootstrap_intervals(mean_of(hits), len(hits), seed=1).values()
    half_width = 1.96 * math.sqrt(p * (1 - p) / len(hits))
    assert interval.low < p < interval.high
    assert interval.high - interval.low == pytest.approx(2 * half_width, rel=0.15)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    values = [random.Random(i).random() for i in range(50)]
    first = bootstrap_intervals(mean_of(values), 50, seed=7)
    assert first == bootstrap_intervals(mean_of(values), 50, seed=7)
    assert first != bootstrap_intervals(mean_of(values), 50, seed=8)


def test_no_rows_no_interval():
    assert bootstrap_intervals(mean_of([]), 0) == {}


def test_a_model_against_itself_differs_by_nothing_by_chance():
    values = [random.Random(i).random() for i in range(100)]
    (same,) = paired_bootstrap(mean_of(values), mean_of(values), 100).values()
    assert same.delta == 0 and same.low == 0 and same.high == 0
    assert same.p_value == 1.0


def test_pairing_sees_a_small_steady_gain_that_separate_intervals_hide():
    # Rows differ a lot in difficulty; the candidate is better by 0.02 on nearly every row.
    rng = random.Random(3)
    baseline = [rng.random() for _ in range(200)]
    candidate = [b + 0.02 + rng.gauss(0, 0.005) for b in baseline]
    (base_ci,) = bootstrap_intervals(mean_of(baseline), 200, seed=0).values()
    (cand_ci,) = bootstrap_intervals(mean_of(candidate), 200, seed=0).values()
    assert cand_ci.low < base_ci.high  # unpaired, the intervals overlap...

    (gain,) = paired_bootstrap(mean_of(baseline), mean_of(candidate), 200).values()
    assert gain.delta == pytest.approx(0.02, abs=0.002)
    assert 0 < gain.low < gain.delta < gain.high  # ...paired, the gain is clearly above 0
    assert gain.p_value < 0.01


def test_a_coin_flip_difference_is_not_significant():
    rng = random.Random(5)
    baseline = [float(rng.random() < 0.5) for _ in range(100)]
    candidate = [float(rng.random() < 0.5) for _ in range(100)]
    (diff,) = paired_bootstrap(mean_of(baseline), mean_of(candidate), 100).values()
    assert diff.low < 0 < diff.high and diff.p_value > 0.05
