"""The win-rate chart of a comparison batch: each pair's win rate with its 95% interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402


def win_rate_chart(
    rows: Sequence[tuple[str, float, float, float]],
    path: Path,
    *,
    title: str,
    counts: Mapping[str, int] | None = None,
) -> Path:
    """A bar per (label, rate, low, high): "A vs B" with A's win rate and its interval.

    The dashed line at 0.5 is "no preference": an interval that crosses it means the
    votes cannot tell the two models apart yet.
    """
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.6))
    labels = [row[0] for row in rows]
    rates = [row[1] for row in rows]
    errors = [[r - low for _, r, low, _ in rows], [high - r for _, r, _, high in rows]]
    positions = range(len(rows))
    ax.barh(positions, rates, xerr=errors, color="#4c72b0", capsize=4, height=0.5)
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.set_yticks(list(positions), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first model (ties count half), 95% Wilson interval")
    for y, rate in zip(positions, rates, strict=True):
        count = f" (n={counts[labels[y]]})" if counts else ""
        ax.text(0.01, y, f"{rate:.2f}{count}", va="center", color="white", fontsize=9)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
