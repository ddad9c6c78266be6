"""The loss curve of a training run, drawn from the points MLflow recorded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402

Points = Sequence[tuple[int, float]]  # (step, loss)


def loss_curve(train: Points, val: Points, path: Path, *, vocab_size: int | None = None) -> Path:
    """Training loss per step (thin) and validation loss at each evaluation (dots), with
    ln(vocab_size), the loss of a uniform guess, as the line to get well below."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        ax.plot(*zip(*train, strict=True), lw=0.8, color="#4c72b0", label="train")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", color="#dd8452", label="validation")
    if vocab_size:
        ax.axhline(
            math.log(vocab_size),
            ls="--",
            color="grey",
            lw=0.8,
            label=f"uniform guess, ln {vocab_size:,}",
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("Loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
