"""Everything a batch's votes say, in one object: what the flow logs and the CLI prints.
(The flow names its MLflow metrics and tables in `pipelines/preference_records.py`.)

One summary reads one kind of judge: people, or the simulated judge. The two are never
mixed: a demo's scripted votes must not pass for human judgement.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import PurePath
from typing import Literal

from sqlalchemy.orm import Session

from tasks.preferences import analysis
from tasks.preferences.batches import AnnotatorStats, annotator_stats, batch_votes
from tasks.preferences.store import Batch

Judge = Literal["people", "simulated"]
NO_VOTES = "no votes yet"


def shown(value: float, missing: str = NO_VOTES) -> str:
    """A rate as a person reads it: three decimals, or `missing` where there is nothing to
    count yet (a rate over zero votes is NaN, and "nan" tells nobody anything)."""
    return missing if math.isnan(value) else f"{value:.3f}"


def interval_shown(rate: float, low: float, high: float) -> str:
    """A rate's 95% interval, or a dash where the rate itself is missing."""
    return "–" if math.isnan(rate) else f"{low:.3f} to {high:.3f}"


@dataclass(frozen=True)
class BatchSummary:
    batch: str
    judge: Judge
    models: list[str]
    labels: dict[str, str]  # model -> a short name that is still unique in this batch
    votes: int  # comparison votes (not gold items, not repeats)
    win_rates: list[analysis.WinRate]
    strengths: dict[str, float]  # Bradley-Terry log-strengths (empty for two models)
    strength_intervals: dict[str, tuple[float, float]]
    position: analysis.PositionBias
    agreement: float  # between annotators on the same item; nan without such pairs
    agreement_pairs: int
    annotators: list[AnnotatorStats]

    def markdown(self) -> str:
        lines = [
            f"# Preferences: {self.batch} ({self.judge} judge, {self.votes} comparisons)",
            "",
            'Win rate = (wins + ties/2) / (wins + losses + ties); "both bad" is '
            "left out. 95% Wilson interval.",
            "",
            "| model | vs | wins | losses | ties | both bad | win rate | 95% interval |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for w in self.win_rates:
            lines.append(
                f"| {self.labels[w.model]} | {self.labels[w.opponent]} | {w.wins} | "
                f"{w.losses} | {w.ties} | {w.both_bad} | {shown(w.rate)} | "
                f"{interval_shown(w.rate, w.low, w.high)} |"
            )
        if self.strengths:
            lines += [
                "",
                "| model | Bradley-Terry score | 95% bootstrap interval |",
                "|---|---|---|",
            ]
            for model, score in sorted(self.strengths.items(), key=lambda kv: -kv[1]):
                low, high = self.strength_intervals[model]
                lines.append(f"| {self.labels[model]} | {score:+.3f} | {low:+.3f} to {high:+.3f} |")
        p = self.position
        position = (
            f"Left side won {p.left_wins} of {p.decided} decided votes "
            f"(share {p.left_share:.3f}, binomial p = {p.p_value:.3g})."
            if p.decided
            else "No vote for a side yet, so no position bias to measure."
        )
        agreement = (
            f"Agreement between annotators: {self.agreement:.3f} over "
            f"{self.agreement_pairs} pairs of votes."
            if self.agreement_pairs
            else "Agreement between annotators: no item judged by two annotators yet."
        )
        lines += ["", position, agreement]
        return "\n".join(lines) + "\n"


def summarise(session: Session, batch: Batch, judge: Judge = "people") -> BatchSummary:
    votes = batch_votes(session, batch, simulated=judge == "simulated")
    models = list(batch.models)
    strengths, intervals = {}, {}
    if len(models) > 2 and votes:
        strengths = analysis.bradley_terry(votes)
        intervals = analysis.bootstrap_intervals(votes)
    agreement, pairs = analysis.pairwise_agreement(votes)
    return BatchSummary(
        batch=batch.name,
        judge=judge,
        models=models,
        labels=model_labels(models, batch.settings.get("labels")),
        votes=len(votes),
        win_rates=[analysis.win_rate(votes, a, b) for a, b in combinations(models, 2)],
        strengths=strengths,
        strength_intervals=intervals,
        position=analysis.position_bias(votes),
        agreement=agreement,
        agreement_pairs=pairs,
        annotators=annotator_stats(session, batch),
    )


def model_labels(models: list[str], given: list[str] | None = None) -> dict[str, str]:
    """The names shown for the models: those `given` with the batch (e.g. "base", "tuned"),
    else short names made from their paths."""
    if given and len(given) == len(models) and len(set(given)) == len(given):
        return {m: re.sub(r"[^\w./ -]", "_", label) for m, label in zip(models, given, strict=True)}
    return short_labels(models)


def short_labels(models: list[str]) -> dict[str, str]:
    """Short names for metric keys and charts: the last part of each path, or as many
    last parts as it takes to tell the models apart (`run-a/best`, `run-b/best`)."""
    parts = {m: PurePath(m).parts or (m,) for m in models}
    for depth in range(1, max(len(p) for p in parts.values()) + 1):
        labels = {m: "/".join(p[-depth:]) for m, p in parts.items()}
        if len(set(labels.values())) == len(models):
            break
    return {m: re.sub(r"[^\w./ -]", "_", label) for m, label in labels.items()}
