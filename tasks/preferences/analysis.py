"""What human comparisons say: win rates with honest uncertainty, and checks on the voters.

A vote compares two continuations of the same prompt: left better, right better, tie, or
both bad. The numbers here follow from those votes:

- **Win rate** of model A over model B: (A's wins + half the ties) / (wins + losses + ties).
  A tie is evidence that the two are equally good, so it counts half for each side;
  "both bad" says nothing about which is better, so it is left out (and reported apart).
  Its 95% interval is Wilson's score interval, which behaves well near 0 and 1 and for
  small counts, where the textbook p ± 1.96·sqrt(p(1-p)/n) does not.
- **Bradley-Terry strengths** when more than two models are compared: each model gets a
  strength s, and P(i beats j) = s_i / (s_i + s_j); fitted by Hunter's MM algorithm, with
  bootstrap intervals (votes resampled with a fixed seed).
- **Position bias**: people tend to favour one side of the screen. Since sides are
  randomised, the share of decided votes won by the left side should be near 0.5; a
  binomial test says how surprising the observed share is.
- **Agreement**: how often two annotators who judged the same item agree.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from scipy.stats import binomtest

Choice = str  # "left" | "right" | "tie" | "both_bad"
CHOICES = ("left", "right", "tie", "both_bad")


@dataclass(frozen=True)
class Vote:
    """One judgement, with which model was shown on which side."""

    item: str
    annotator: str
    left_model: str
    right_model: str
    choice: Choice


@dataclass(frozen=True)
class WinRate:
    model: str
    opponent: str
    wins: int
    losses: int
    ties: int
    both_bad: int
    rate: float  # (wins + ties / 2) / (wins + losses + ties); nan without votes
    low: float  # Wilson 95% interval
    high: float


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (successes may be fractional: ties)."""
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def win_rate(votes: Iterable[Vote], model: str, opponent: str) -> WinRate:
    """How often `model` beat `opponent` in the votes that showed the two together."""
    counts = Counter()
    for vote in votes:
        if {vote.left_model, vote.right_model} != {model, opponent}:
            continue
        if vote.choice in ("tie", "both_bad"):
            counts[vote.choice] += 1
            continue
        winner = vote.left_model if vote.choice == "left" else vote.right_model
        counts["wins" if winner == model else "losses"] += 1
    decided = counts["wins"] + counts["losses"] + counts["tie"]
    score = counts["wins"] + counts["tie"] / 2
    low, high = wilson_interval(score, decided)
    rate = score / decided if decided else float("nan")
    return WinRate(
        model=model,
        opponent=opponent,
        wins=counts["wins"],
        losses=counts["losses"],
        ties=counts["tie"],
        both_bad=counts["both_bad"],
        rate=rate,
        low=low,
        high=high,
    )


# ---------------------------------------------------------------------------------------
# Bradley-Terry


def bradley_terry(votes: Sequence[Vote], iterations: int = 500) -> dict[str, float]:
    """Each model's strength, as a log (mean 0 over models): a difference of d between two
    models means the first wins with probability 1 / (1 + exp(-d)).

    Hunter's MM algorithm: s_i <- W_i / sum_j n_ij / (s_i + s_j), where W_i is i's wins
    (ties half) and n_ij the decided comparisons of i and j. A model with no win at all
    has no finite strength; half a win is added to every model (a weak prior) so that
    the answer always exists.
    """
    models = sorted({v.left_model for v in votes} | {v.right_model for v in votes})
    wins = dict.fromkeys(models, 0.5)
    games: Counter[tuple[str, str]] = Counter()
    for vote in votes:
        if vote.choice == "both_bad":
            continue
        pair = tuple(sorted((vote.left_model, vote.right_model)))
        games[pair] += 1
        if vote.choice == "tie":
            wins[vote.left_model] += 0.5
            wins[vote.right_model] += 0.5
        else:
            wins[vote.left_model if vote.choice == "left" else vote.right_model] += 1
    for a, b in combinations(models, 2):  # the prior's games, matching its half wins
        games[(a, b)] += 1 / max(1, len(models) - 1)
    strength = dict.fromkeys(models, 1.0)
    for _ in range(iterations):
        updated = {}
        for i in models:
            denominator = sum(
                n / (strength[i] + strength[j if i == a else a])
                for (a, j), n in games.items()
                if i in (a, j)
            )
            updated[i] = wins[i] / denominator
        mean_log = sum(math.log(s) for s in updated.values()) / len(updated)
        strength = {m: s / math.exp(mean_log) for m, s in updated.items()}
    return {m: math.log(s) for m, s in strength.items()}


def bootstrap_intervals(
    votes: Sequence[Vote], rounds: int = 200, seed: int = 0, confidence: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each Bradley-Terry score over `rounds` resamplings of the
    votes (with replacement, a fixed seed: the same intervals every time)."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        resampled = [votes[rng.randrange(len(votes))] for _ in votes]
        for model, score in bradley_terry(resampled, iterations=100).items():
            samples[model].append(score)
    tail = (1 - confidence) / 2
    intervals = {}
    for model, values in samples.items():
        values.sort()
        low = values[int(tail * (len(values) - 1))]
        high = values[int(math.ceil((1 - tail) * (len(values) - 1)))]
        intervals[model] = (low, high)
    return intervals


# ---------------------------------------------------------------------------------------
# Checks on the voting itself


@dataclass(frozen=True)
class PositionBias:
    left_wins: int
    decided: int  # votes for the left or the right side
    left_share: float
    p_value: float  # two-sided binomial test against 0.5


def position_bias(votes: Iterable[Vote]) -> PositionBias:
    decided = [v for v in votes if v.choice in ("left", "right")]
    left = sum(v.choice == "left" for v in decided)
    if not decided:
        return PositionBias(0, 0, float("nan"), 1.0)
    test = binomtest(left, len(decided), 0.5)
    return PositionBias(left, len(decided), left / len(decided), float(test.pvalue))


def _preferred(vote: Vote) -> str:
    """What a vote says, independent of the sides: the model preferred, or tie/both bad."""
    if vote.choice == "left":
        return vote.left_model
    if vote.choice == "right":
        return vote.right_model
    return vote.choice


def pairwise_agreement(votes: Iterable[Vote]) -> tuple[float, int]:
    """Share of pairs of votes by different annotators on the same item that agree (sides
    do not matter: the preferred model does), and how many such pairs there are."""
    by_item: dict[str, list[Vote]] = defaultdict(list)
    for vote in votes:
        by_item[vote.item].append(vote)
    agree = pairs = 0
    for item_votes in by_item.values():
        for a, b in combinations(item_votes, 2):
            if a.annotator != b.annotator:
                pairs += 1
                agree += _preferred(a) == _preferred(b)
    return (agree / pairs if pairs else float("nan"), pairs)
