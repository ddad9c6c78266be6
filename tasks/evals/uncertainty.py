"""How sure a score is: bootstrap intervals, and paired comparisons of two models.

A score measured on n rows is one draw: other rows from the same source would give another
figure. The bootstrap estimates how much it would move by re-scoring many resamples of the
rows (n rows drawn with replacement each time) and reading the middle 95% of the resampled
scores (the percentile interval). It needs no formula per metric, so it works the same for
a perplexity, an accuracy or a corpus-level ROUGE.

Two models scored on the same rows are compared *paired*: each resample takes the same rows
for both, so the rows' own difficulty cancels out and only the models' difference is left.
The p-value is the paired bootstrap's (Koehn, 2004, as sacrebleu runs it for BLEU): how
often a resampled difference, shifted to be centred on zero, lands at least as far from
zero as the observed one. A small p-value says such a gap rarely arises by chance.

Everything is seeded: the same rows and seed give the same interval in every run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# A score function over a subset of the rows: row indices (with repeats) -> metrics.
ScoreAt = Callable[[Sequence[int]], Mapping[str, float]]

CONFIDENCE = 0.95
RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class PairedDifference:
    """candidate - baseline on the same rows, with its bootstrap interval and p-value."""

    baseline: float
    candidate: float
    delta: float
    low: float
    high: float
    p_value: float


def resample_indices(rows: int, resamples: int, seed: int) -> np.ndarray:
    """`resamples` x `rows` row indices drawn with replacement, the same for a given seed."""
    return np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))


def bootstrap_intervals(
    score_at: ScoreAt,
    rows: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Interval]:
    """A percentile interval for every metric `score_at` returns, from `resamples`
    resamples of the `rows` rows. No rows, no interval."""
    if rows == 0 or resamples == 0:
        return {}
    draws: dict[str, list[float]] = {}
    for indices in resample_indices(rows, resamples, seed):
        for name, value in score_at(indices.tolist()).items():
            draws.setdefault(name, []).append(value)
    return {name: _percentiles(values, confidence) for name, values in draws.items()}


def paired_bootstrap(
    baseline_at: ScoreAt,
    candidate_at: ScoreAt,
    rows: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, PairedDifference]:
    """candidate - baseline for every metric both return, resampling the same rows for
    both models each time."""
    if rows == 0:
        return {}
    everything = list(range(rows))
    observed_base, observed_cand = baseline_at(everything), candidate_at(everything)
    shared = [name for name in observed_cand if name in observed_base]
    deltas: dict[str, list[float]] = {name: [] for name in shared}
    for indices in resample_indices(rows, resamples, seed):
        picked = indices.tolist()
        base, cand = baseline_at(picked), candidate_at(picked)
        for name in shared:
            deltas[name].append(cand[name] - base[name])
    found = {}
    for name in shared:
        observed = observed_cand[name] - observed_base[name]
        interval = _percentiles(deltas[name], confidence)
        found[name] = PairedDifference(
            baseline=observed_base[name],
            candidate=observed_cand[name],
            delta=observed,
            low=interval.low,
            high=interval.high,
            p_value=_p_value(np.asarray(deltas[name]), observed),
        )
    return found


def _percentiles(values: Sequence[float], confidence: float) -> Interval:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return Interval(float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high))


def _p_value(resampled: np.ndarray, observed: float) -> float:
    """Two-sided: how often a centred resampled |difference| exceeds the observed one
    (+1 on both sides, so a p-value is never exactly 0 from finitely many resamples)."""
    resampled = resampled[np.isfinite(resampled)]
    if resampled.size == 0:
        return float("nan")
    spread = np.abs(resampled - resampled.mean())
    return float((np.sum(spread >= abs(observed)) + 1) / (resampled.size + 1))
