"""Pictures of a corpus run: the funnel (how many records survive each stage) and the
length distribution of the kept documents. Plain matplotlib, written to PNG files that
the corpus flow attaches to its MLflow run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402


def funnel_chart(stages: Sequence[tuple[str, int]], path: Path, title: str = "Corpus funnel"):
    """Horizontal bars, widest at the top: each stage's survivors, with counts and the
    share of the first stage."""
    names = [name for name, _ in stages]
    counts = [count for _, count in stages]
    first = max(counts[0], 1) if counts else 1
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(stages) + 1.2))
    bars = ax.barh(range(len(stages)), counts, color="#4c72b0")
    ax.set_yticks(range(len(stages)), names)
    ax.invert_yaxis()  # first stage on top
    for bar, count in zip(bars, counts, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {count:,} ({count / first:.0%})",
            va="center",
        )
    ax.set_xlim(0, first * 1.25)
    ax.set_xlabel("records")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def length_histogram(lengths: Sequence[int], path: Path, unit: str = "words"):
    """Histogram of document lengths on a log scale (web pages span orders of magnitude)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    if lengths:
        low, high = max(min(lengths), 1), max(max(lengths), 2)
        bins = [low * (high / low) ** (i / 30) for i in range(31)]
        ax.hist(lengths, bins=bins, color="#55a868")
        ax.set_xscale("log")
    ax.set_xlabel(f"document length ({unit}, log scale)")
    ax.set_ylabel("documents")
    ax.set_title(f"Kept documents: {len(lengths):,}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
