"""What the DDP tests share: one small training config and the loss comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.train import TrainConfig
from tasks.train.loop import TrainResult

# Float sums in another order (two half-batches averaged across processes, against one
# batch accumulated in one) differ in the last bits; over 12 steps that stays far below
# this. Anything wrong in the sharing of data or gradients shows up at 1e-2 and above.
TOLERANCE = 1e-4


def small_config(tokens_dir: Path, out: Path | None) -> TrainConfig:
    """12 steps of the tiny model; each step's batch splits into 2 processes x 2 micro-batches."""
    return TrainConfig(
        tokens=tokens_dir,
        out=out,
        model="tiny",
        context=64,
        micro_batch=4,
        batch_tokens=512,
        max_steps=12,
        warmup_steps=3,
        learning_rate=3e-3,
        eval_interval=6,
        eval_batches=2,
        checkpoint_interval=6,
        dropout=0.0,
        register_as=None,
    )


def assert_same_losses(single: TrainResult, distributed: dict) -> None:
    """The distributed run's result record (train_worker's rank 0 wrote it) follows the
    single process step by step, and ends at the same validation loss."""
    assert len(distributed["train_losses"]) == len(single.train_losses) == 12
    pairs = zip(single.train_losses, distributed["train_losses"], strict=True)
    for step, (one, many) in enumerate(pairs, start=1):
        assert many == pytest.approx(one, abs=TOLERANCE), f"step {step}"
    assert distributed["val_loss"] == pytest.approx(single.val_loss, abs=TOLERANCE)
