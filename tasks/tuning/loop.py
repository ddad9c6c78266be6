"""The optimisation loop shared by the reward model and DPO, resumable after an interruption.

    for each epoch:   shuffle the training comparisons into minibatches
        for each minibatch:
            loss = the method's loss on it     (the reward model's or DPO's)
            backward; clip the gradient norm; AdamW step at the warmed-up learning rate
            every `eval_every` steps: measure on the held-out prompts

Metric names follow pretraining's scheme (`reports/mlflow_names.py`; `tasks/` may not import
`reports/`, so the strings are repeated below): the training loss is `loss/train` and the
held-out loss `loss/val`, so MLflow's UI charts them together; other per-step measures are
`train/<name>`, other held-out ones `val/<name>`; `epoch` is the progress so far.

Every `checkpoint_every` steps the loop saves what it needs to go on (the weights,
AdamW's moments, the step, the shuffling generator, the metrics so far) into a progress
folder. Started again with the same folder, it continues from there and ends with the
same weights as a run that was never stopped (on the CPU, bit for bit): the minibatches
are drawn again from the saved generator, and the ones already done are skipped.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_model, save_model

from model.atomic_files import write_folder_atomically
from model.errors import Gpt2labError

Metrics = dict[str, float]
OnMetrics = Callable[[int, Metrics], None]
STATE_FILE = "loop_state.pt"
WEIGHTS_FILE = "weights.safetensors"

# The names the loop reports under, as reports/mlflow_names.py's TRAIN_LOSS and VAL_LOSS:
# both losses share the prefix `loss/`, which is how MLflow's UI puts them in one chart.
# Other per-step measures are named `train/...` by the method's `loss_of` (`train/accuracy`).
TRAIN_LOSS = "loss/train"
VAL_LOSS = "loss/val"
VAL_PREFIX = "val/"  # other held-out measures: `val/accuracy`, `val/kl`, ...
OLD_VAL_PREFIX = "held_out/"  # what progress folders of earlier versions hold
EPOCH = "epoch"


def val_metrics(measured: Metrics) -> Metrics:
    """A held-out measurement under the names it is reported with:
    `{"loss": 0.6, "accuracy": 0.7}` -> `{"loss/val": 0.6, "val/accuracy": 0.7}`."""
    return {VAL_LOSS if name == "loss" else VAL_PREFIX + name: v for name, v in measured.items()}


def measured_from(reported: Metrics) -> Metrics:
    """The held-out measurement within a report, by its plain names (`val_metrics` undone)."""
    found = {"loss": reported[VAL_LOSS]} if VAL_LOSS in reported else {}
    found |= {
        name.removeprefix(VAL_PREFIX): v
        for name, v in reported.items()
        if name.startswith(VAL_PREFIX)
    }
    # A progress folder saved before the names above reported `held_out/<name>`; one
    # resumed from it must still find its last measurement.
    found |= {
        name.removeprefix(OLD_VAL_PREFIX): v
        for name, v in reported.items()
        if name.startswith(OLD_VAL_PREFIX)
    }
    return found


class LoopSettings(BaseModel):
    """The settings both methods share."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, description="passes over the training comparisons")
    batch_size: int = Field(8, ge=1, description="comparisons (or pairs) per optimizer step")
    learning_rate: float = Field(1e-5, gt=0)
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    eval_every: int = Field(50, ge=1, description="steps between held-out measurements")
    checkpoint_every: int = Field(100, ge=1, description="steps between saves of progress")
    max_tokens: int | None = Field(None, ge=2, description="per text; default: the context")
    seed: int = 0


class ProgressError(Gpt2labError):
    """Saved progress that belongs to another run."""


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    done_in_epoch: int = 0  # its minibatches already done
    epoch_shuffle: Any = None  # the shuffling generator's state when that epoch began
    history: list[tuple[int, Metrics]] = field(default_factory=list)


@dataclass
class LoopResult:
    steps: int
    held_out: Metrics  # the final measurement
    history: list[tuple[int, Metrics]]  # every report, in order


def optimise(
    model: torch.nn.Module,
    settings: LoopSettings,
    *,
    minibatches: Callable[[random.Random], list[list[int]]],
    loss_of: Callable[[list[int]], tuple[torch.Tensor, Metrics]],
    measure: Callable[[], Metrics],
    on_metrics: OnMetrics | None = None,
    progress: Path | None = None,
) -> LoopResult:
    """Train `model`'s parameters that require gradients.

    minibatches(rng): one epoch's minibatches (lists of training indices), shuffled by rng.
    loss_of(indices): the loss to minimise on a minibatch (reported as `loss/train`), and
        other metrics to report with it (named `train/...`).
    measure(): metrics on the held-out data by plain names (`loss`, `accuracy`, ...),
        reported as `loss/val` and `val/...`.
    progress: the folder to save progress in and resume from (None: no saving).
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    shuffle = random.Random(settings.seed)
    state = _restore(progress, settings, model, optimizer) or LoopState(
        epoch_shuffle=shuffle.getstate()
    )
    for step, metrics in state.history:  # a resumed run shows its whole curve again
        if on_metrics is not None:
            on_metrics(step, metrics)

    def report(metrics: Metrics) -> None:
        state.history.append((state.step, metrics))
        if on_metrics is not None:
            on_metrics(state.step, metrics)

    # Epochs are reported as a fraction (1.5 = half-way through the second), as a
    # progress measure; every epoch has the same number of minibatches.
    steps_per_epoch = len(minibatches(random.Random(settings.seed)))
    held_out: Metrics = {}
    while state.epoch < settings.epochs:
        shuffle.setstate(state.epoch_shuffle)
        for indices in minibatches(shuffle)[state.done_in_epoch :]:
            warmup = warmup_factor(state.step, settings.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * warmup
            loss, metrics = loss_of(indices)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
            optimizer.step()
            state.step += 1
            state.done_in_epoch += 1
            metrics = {TRAIN_LOSS: loss.item(), **metrics, EPOCH: state.step / steps_per_epoch}
            if state.step % settings.eval_every == 0:
                held_out = measure()
                metrics |= val_metrics(held_out)
            report(metrics)
            if progress is not None and state.step % settings.checkpoint_every == 0:
                _save(progress, settings, model, optimizer, state)
        state.epoch, state.done_in_epoch = state.epoch + 1, 0
        state.epoch_shuffle = shuffle.getstate()
    if state.step % settings.eval_every or state.step == 0:  # the end: measured once more
        held_out = measure()
        report(val_metrics(held_out))
    elif not held_out:  # resumed right after the last measurement: read it back
        held_out = measured_from(state.history[-1][1])
    return LoopResult(steps=state.step, held_out=held_out, history=state.history)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning rate's share at `step`: rising linearly over the first steps, while
    AdamW's moment estimates are still empty, then constant (a fine-tuning schedule)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def _save(
    folder: Path,
    settings: LoopSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
) -> None:
    def write(tmp: Path) -> None:
        save_model(model, str(tmp / WEIGHTS_FILE))  # handles GPT-2's tied output layer
        torch.save(
            {
                "settings": settings.model_dump(mode="json"),
                "optimizer": optimizer.state_dict(),
                "state": _plain(state),
            },
            tmp / STATE_FILE,
        )

    write_folder_atomically(folder, write)


def _plain(state: LoopState) -> dict[str, Any]:
    """The state as numbers, strings and lists only, so loading it runs no pickled code."""
    version, internal, gauss = state.epoch_shuffle
    return {
        "step": state.step,
        "epoch": state.epoch,
        "done_in_epoch": state.done_in_epoch,
        "epoch_shuffle": [version, list(internal), gauss],
        "history": [[step, metrics] for step, metrics in state.history],
    }


def _restore(
    folder: Path | None,
    settings: LoopSettings,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> LoopState | None:
    if folder is None or not (folder / STATE_FILE).is_file():
        return None
    saved = torch.load(folder / STATE_FILE, weights_only=True)
    if saved["settings"] != settings.model_dump(mode="json"):
        raise ProgressError(
            f"{folder}: saved progress of a run with other settings; "
            "delete the folder to start again"
        )
    load_model(model, str(folder / WEIGHTS_FILE))
    optimizer.load_state_dict(saved["optimizer"])
    plain = saved["state"]
    version, internal, gauss = plain["epoch_shuffle"]
    return LoopState(
        step=plain["step"],
        epoch=plain["epoch"],
        done_in_epoch=plain["done_in_epoch"],
        epoch_shuffle=(version, tuple(internal), gauss),
        history=[(step, metrics) for step, metrics in plain["history"]],
    )


def clear_progress(folder: Path | None) -> None:
    """Remove saved progress once the finished model is saved."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
