"""Saving and loading our own checkpoint format.

Our format is a folder with two files:
  - `gpt2lab.json`: the GPTConfig (and any metadata the caller adds),
  - `model.safetensors`: the weights, named as in `GPT.state_dict()`, the tied output
    layer stored once (as the token embedding).
safetensors stores plain tensors (no pickled code, unlike `torch.save`), so opening a
checkpoint from someone else cannot run their code.

Hugging Face GPT-2 folders are converted in `hf_checkpoint.py`; `loading.py` takes any of
the three (ours, theirs, a hub id) and picks the right reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.atomic_files import write_folder_atomically
from model.config import GPTConfig
from model.errors import CheckpointError
from model.gpt import GPT
from model.tokenizer import Tokenizer

CONFIG_FILE = "gpt2lab.json"
WEIGHTS_FILE = "model.safetensors"
TIED_KEY = "lm_head.weight"  # same tensor as transformer.wte.weight


def save_checkpoint(
    model: GPT,
    folder: str | Path,
    metadata: Mapping[str, Any] | None = None,
    *,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write `model` in our format to `folder` (replacing it atomically).

    With `tokenizer`, its files go into the same folder, so that the folder alone is
    enough to sample from (`gpt2lab generate --model <folder>`).
    """
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != TIED_KEY}

    def write(tmp: Path) -> None:
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "gpt2lab"})
        payload = {"config": model.config.to_dict(), "metadata": dict(metadata or {})}
        (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp)

    write_folder_atomically(Path(folder), write)
    return Path(folder)


def read_checkpoint_config(folder: Path) -> tuple[GPTConfig, dict[str, Any]]:
    path = folder / CONFIG_FILE
    try:
        payload = json.loads(path.read_text())
        return GPTConfig.from_dict(payload["config"], source=str(path)), payload.get("metadata", {})
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a valid gpt2lab config ({err})") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def load_state_into(model: GPT, state: Mapping[str, torch.Tensor], source: str) -> GPT:
    """Copy `state` into `model`, naming the first missing, unexpected or misshapen tensor."""
    expected = {k: v for k, v in model.state_dict().items() if k != TIED_KEY}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - {TIED_KEY})
    if missing:
        raise CheckpointError(f"{source}: missing weight {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected weight {unexpected[0]!r}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: weight {name!r} has shape {tuple(state[name].shape)}, "
                f"but the config needs {tuple(tensor.shape)}"
            )
    model.load_state_dict({k: state[k] for k in expected}, strict=False)
    return model


def load_checkpoint(folder: str | Path) -> GPT:
    """Load one of our checkpoints."""
    folder = Path(folder)
    config, _ = read_checkpoint_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {folder} has {CONFIG_FILE} but no {WEIGHTS_FILE}")
    model = GPT(config)
    return load_state_into(model, load_file(weights), str(weights))
