"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A training checkpoint is a model checkpoint folder (gpt2lab.json + model.safetensors +
the tokenizer's files, loadable by `model.load_model` and `gpt2lab generate`) with
one more file, `training_state.pt`: the optimizer's moments, the step, the random
generators' states (data sampling and dropout) and the best validation loss so far.

    <run>/checkpoints/step-000100/     every `checkpoint_interval` steps; the last K kept
    <run>/checkpoints/step-000200/
    <run>/checkpoints/best/            the lowest validation loss so far

Each folder is written under a temporary name and renamed when complete, so a run
killed while saving leaves the previous checkpoint intact and never a half-written one
that looks finished.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import GPT, save_checkpoint
from model.checkpoint import load_state_into
from model.errors import Gpt2labError
from model.tokenizer import Tokenizer

STATE_FILE = "training_state.pt"
BEST = "best"
_STEP_FOLDER = re.compile(r"step-(\d{6,})")


class TrainingError(Gpt2labError):
    """A run that cannot start or cannot go on; the message says why and what to do."""


@dataclass
class TrainingState:
    """What, besides the weights, a resumed run needs to continue identically."""

    step: int  # optimizer steps completed
    optimizer: dict[str, Any]
    data: dict[str, Any]  # the batch sampler's state
    rng: dict[str, Any]  # torch, numpy and Python generators (dropout, anything random)
    best_val_loss: float | None
    settings: dict[str, Any]  # the run's settings, to refuse resuming a different run


def capture_rng() -> dict[str, Any]:
    """The global generators' states, as tensors and plain Python values (so that loading
    them back needs no pickled classes)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_folder(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"step-{step:06d}"


def save_training_checkpoint(
    folder: Path,
    model: GPT,
    tokenizer: Tokenizer | None,
    state: TrainingState,
    metadata: dict[str, Any],
) -> Path:
    """Write model + tokenizer + training state to `folder`, atomically."""
    # save_checkpoint writes the folder atomically; the state file goes in through a
    # second atomic step: written beside, then the whole folder renamed (see below).
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tmp, metadata, tokenizer=tokenizer)
    torch.save(state.__dict__, tmp / STATE_FILE)
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)  # the moment the new checkpoint exists, complete
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_training_state(folder: Path, model: GPT) -> TrainingState:
    """Load the weights of `folder` into `model` and return its training state."""
    from safetensors.torch import load_file

    from model.checkpoint import WEIGHTS_FILE

    load_state_into(model, load_file(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))
    # weights_only: tensors, numbers, strings and containers are read back, never code.
    raw = torch.load(folder / STATE_FILE, weights_only=True)
    return TrainingState(**raw)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The step folder with the most steps (folders being written start with a dot and
    are never taken)."""
    steps = [
        (int(match.group(1)), path)
        for path in checkpoints.glob("step-*")
        if (match := _STEP_FOLDER.fullmatch(path.name)) and (path / STATE_FILE).is_file()
    ]
    return max(steps)[1] if steps else None


def prune(checkpoints: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete step folders, and what killed saves
    left behind (temporary folders, step folders without their training state)."""
    complete = []
    for path in checkpoints.glob("step-*"):
        if not _STEP_FOLDER.fullmatch(path.name):
            continue
        if (path / STATE_FILE).is_file():
            complete.append((int(path.name.removeprefix("step-")), path))
        else:
            shutil.rmtree(path)
    for _, path in sorted(complete)[:-keep_last]:
        shutil.rmtree(path)
    for leftover in [*checkpoints.glob(".*.partial"), *checkpoints.glob(".*.old")]:
        shutil.rmtree(leftover, ignore_errors=True)
