"""A batch summary as MLflow records it: flat metrics and tables under the names the
reports read back (see `reports/mlflow_names.py`)."""

from __future__ import annotations

import math

from reports.mlflow_names import (
    WIN_RATE_COLUMNS,
    WIN_RATE_HIGH_PREFIX,
    WIN_RATE_LOW_PREFIX,
    WIN_RATE_PREFIX,
    pair_name,
)
from tasks.preferences.summary import BatchSummary


def summary_metrics(summary: BatchSummary) -> dict[str, float]:
    """Flat numbers for MLflow (names use the short labels; nan values are left out)."""
    out: dict[str, float] = {"votes": summary.votes}
    for w in summary.win_rates:
        pair = pair_name(summary.labels[w.model], summary.labels[w.opponent])
        out |= {
            f"{WIN_RATE_PREFIX}{pair}": w.rate,
            f"{WIN_RATE_LOW_PREFIX}{pair}": w.low,
            f"{WIN_RATE_HIGH_PREFIX}{pair}": w.high,
            f"ties/{pair}": w.ties,
            f"both_bad/{pair}": w.both_bad,
        }
    for model, score in summary.strengths.items():
        low, high = summary.strength_intervals[model]
        label = summary.labels[model]
        out |= {f"bt_score/{label}": score, f"bt_low/{label}": low, f"bt_high/{label}": high}
    out |= {
        "position/left_share": summary.position.left_share,
        "position/p_value": summary.position.p_value,
        "agreement/between_annotators": summary.agreement,
        "agreement/pairs": summary.agreement_pairs,
    }
    judged_gold = [a for a in summary.annotators if a.gold_seen]
    if judged_gold:
        out["gold_accuracy/mean"] = sum(a.gold_accuracy for a in judged_gold) / len(judged_gold)
    return {k: float(v) for k, v in out.items() if not math.isnan(float(v))}


def win_rate_table(summary: BatchSummary) -> dict[str, list]:
    """One row per pair of models, full model names, in the columns WIN_RATE_COLUMNS names."""
    rows = summary.win_rates
    columns = (
        [w.model for w in rows],
        [w.opponent for w in rows],
        [w.wins for w in rows],
        [w.losses for w in rows],
        [w.ties for w in rows],
        [w.both_bad for w in rows],
        [w.rate for w in rows],
        [w.low for w in rows],
        [w.high for w in rows],
    )
    return dict(zip(WIN_RATE_COLUMNS, columns, strict=True))


def annotator_table(summary: BatchSummary) -> dict[str, list]:
    """One row per annotator of this judge's kind: votes, gold items and repeats."""
    rows = [a for a in summary.annotators if a.simulated == (summary.judge == "simulated")]
    return {
        "annotator": [a.name for a in rows],
        "votes": [a.votes for a in rows],
        "gold_correct": [a.gold_correct for a in rows],
        "gold_seen": [a.gold_seen for a in rows],
        "repeats_agreeing": [a.repeats_agreeing for a in rows],
        "repeats_seen": [a.repeats_seen for a in rows],
    }
