"""The stylistic preference experiment's report: what its MLflow run recorded, beside the
figure of Ziegler et al. (2019) it is a miniature of, and what may and may not be read
into the comparison.

The names the experiment's flow writes are defined here and imported by it, so writer
and reader cannot drift apart (see reports/mlflow_names.py).
"""

from __future__ import annotations

from collections.abc import Mapping

STYLISTIC_EXPERIMENT = "stylistic-preference"
ANNOTATOR_TAG = "gpt2lab.annotator"  # who voted: the scripted annotator's name
ANNOTATOR_KIND_TAG = "gpt2lab.annotator_kind"  # "scripted": never people
SCRIPTED = "scripted"

# Per number of comparisons k the reward model and DPO learned from (the curve):
#   curve/<k>/win_rate, curve/<k>/win_rate_low, curve/<k>/win_rate_high, curve/<k>/n,
#   curve/<k>/reward_accuracy, curve/<k>/kl
CURVE_PREFIX = "curve/"
WIN_RATE = "win_rate"
WIN_RATE_LOW = "win_rate_low"
WIN_RATE_HIGH = "win_rate_high"
USED = "used"  # decided comparisons there were to learn from (ties teach nothing)
JUDGED = "n"  # decided and tied votes the win rate is over
REWARD_ACCURACY = "reward_accuracy"  # the reward model's held-out pairwise accuracy
KL = "kl"  # KL(tuned || start), nats per continuation, on the judging prompts
CURVE_FIELDS = (USED, WIN_RATE, WIN_RATE_LOW, WIN_RATE_HIGH, JUDGED, REWARD_ACCURACY, KL)
SECONDS = "seconds"  # the experiment's wall time
REPORT_FILE = "report.md"

# Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences", section 3:
# with 5,000 comparisons, people preferred the tuned 774M model's continuations of book
# text to the start model's 86% of the time (sentiment task; descriptiveness similar).
PAPER_WIN_RATE = 0.86
PAPER_COMPARISONS = 5000


def curve_metric(comparisons: int, field: str) -> str:
    """`(500, "kl")` -> `curve/500/kl`."""
    return f"{CURVE_PREFIX}{comparisons}/{field}"


def curve_points(metrics: Mapping[str, float]) -> dict[int, dict[str, float]]:
    """A run's curve metrics, by number of comparisons: {500: {"win_rate": ..., ...}}."""
    points: dict[int, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith(CURVE_PREFIX):
            size, field = key.removeprefix(CURVE_PREFIX).split("/", 1)
            points.setdefault(int(size), {})[field] = value
    return dict(sorted(points.items()))


def stylistic_markdown(
    metrics: Mapping[str, float], params: Mapping[str, str], tags: Mapping[str, str]
) -> str:
    """The report of one experiment run, from its metrics, params and tags."""
    points = curve_points(metrics)
    annotator = tags.get(ANNOTATOR_TAG, "?")
    lines = [
        "# Stylistic preference experiment (Ziegler et al. 2019, in miniature)",
        "",
        f"Judge: **{annotator}, a scripted annotator, not people**: it votes through the "
        "comparison page for the continuation VADER scores as more positive, with a "
        f"random choice {float(params.get('mistake_rate', 'nan')):.0%} of the time.",
        "",
        "| comparisons (decided) | tuned wins vs start (95% interval) | n | reward model held-out "
        "accuracy | KL(tuned ‖ start), nats |",
        "|---:|---|---:|---:|---:|",
    ]
    for size, point in points.items():
        lines.append(
            f"| {size:,} ({point.get(USED, float('nan')):,.0f}) | {point[WIN_RATE]:.3f} "
            f"({point[WIN_RATE_LOW]:.3f}–"
            f"{point[WIN_RATE_HIGH]:.3f}) | {point[JUDGED]:.0f} | "
            f"{point[REWARD_ACCURACY]:.3f} | {point[KL]:.2f} |"
        )
    lines += [
        f"| paper: {PAPER_COMPARISONS:,} | {PAPER_WIN_RATE:.2f} (people) | | | |",
        "",
        "What matches the paper: continuations of prose prompts; a reward model learned from "
        "pairwise votes; a tuned model judged against the start model on prompts used in no "
        "training; the number of comparisons. What does not: the judge is VADER, a lexicon, "
        "not people (Ziegler's labellers judged sentiment with the whole text in mind); the "
        "model is a tiny GPT trained on made-up stories, not GPT-2 774M on BookCorpus; "
        "tuning is DPO on the votes, not PPO against the reward model; and each vote is one "
        "pair, not the best of four. The tuned model's win rate says how well the tuning "
        "learned what this judge rewards; it is not a measure of what people prefer.",
        "",
        "KL: the exact next-token KL summed along continuations the tuned model samples "
        "from the judging prompts, averaged (nats per continuation).",
    ]
    if SECONDS in metrics:
        lines += ["", f"Wall time: {metrics[SECONDS] / 60:.1f} min."]
    return "\n".join(lines) + "\n"
