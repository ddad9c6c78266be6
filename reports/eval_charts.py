"""Where a model sits among the GPT-2 sizes: the paper's figure per size as a curve over
parameter count (log scale), and the evaluated model as one point with its interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402


@dataclass(frozen=True)
class ScalingCurve:
    """One metric of one task: the paper's figures by size and this model's score."""

    title: str  # "lambada: accuracy"
    paper: Mapping[str, float]  # size label -> the paper's figure
    sizes: Mapping[str, int]  # size label -> parameters
    parameters: int  # the evaluated model's
    value: float
    low: float | None = None
    high: float | None = None


def scaling_curves(curves: Sequence[ScalingCurve], path: Path) -> Path:
    """A small chart per metric, side by side: paper sizes as a line, this model a star."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.8), squeeze=False)
    for ax, curve in zip(axes[0], curves, strict=True):
        labels = sorted(curve.paper, key=lambda s: curve.sizes[s])
        xs = [curve.sizes[s] for s in labels]
        ys = [curve.paper[s] for s in labels]
        ax.plot(xs, ys, "o-", color="#4c72b0", label="GPT-2 paper")
        for i, (x, y, label) in enumerate(zip(xs, ys, labels, strict=True)):
            # Above and below in turn: neighbouring sizes' labels would overlap.
            offset = (4, 5) if i % 2 == 0 else (4, -12)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
        error = None
        if curve.low is not None and curve.high is not None:
            error = [[max(0.0, curve.value - curve.low)], [max(0.0, curve.high - curve.value)]]
        ax.errorbar(
            [curve.parameters],
            [curve.value],
            yerr=error,
            fmt="*",
            color="#c44e52",
            markersize=12,
            capsize=4,
            label="this model (95% interval)",
        )
        ax.set_xscale("log")
        shown = [*ys, curve.value, *(v for v in (curve.low, curve.high) if v is not None)]
        if min(shown) > 0 and max(shown) / min(shown) > 20:
            # Perplexities of a tiny model and of GPT-2 differ by orders of magnitude.
            ax.set_yscale("log")
            ax.set_ylabel("log scale")
        ax.margins(x=0.12)
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(curve.title.replace("$", r"\$"), fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
