"""Loading a model from whatever the user names: our checkpoint folder, a Hugging Face
GPT-2 folder, or a hub id such as `openai-community/gpt2` (when online).

This module sits above both formats (`checkpoint.py`, `hf_checkpoint.py`), so neither
needs to import the other to dispatch, and the network (`gpt.py`) needs neither.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from model.errors import CheckpointError
from model.gpt import GPT
from model.hf_checkpoint import HF_CONFIG_FILE, HF_WEIGHT_FILES, load_hf_folder
from model.hub import resolve_local_or_hub


def load_model(path_or_id: str | Path) -> GPT:
    """Our checkpoint, a Hugging Face GPT-2 folder, or a hub id, whichever `path_or_id` is."""
    folder = checkpoint_folder(path_or_id)
    if (folder / CONFIG_FILE).is_file():
        return load_checkpoint(folder)
    return load_hf_folder(folder)


def checkpoint_folder(path_or_id: str | Path) -> Path:
    """The folder of the checkpoint `path_or_id` names (fetched when it is a hub id), once
    it is known to hold one of the two formats; reads no weights. Commands call it before
    starting a flow, so that a wrong model argument is one line, not a failed flow run."""
    folder, _ = resolve_local_or_hub(
        path_or_id,
        what="checkpoint",
        expected=f"{CONFIG_FILE} + {WEIGHTS_FILE} (gpt2lab) or config.json + model weights "
        "(Hugging Face)",
        files=[(HF_CONFIG_FILE,), HF_WEIGHT_FILES],
        error=CheckpointError,
    )
    if (folder / CONFIG_FILE).is_file() or (folder / HF_CONFIG_FILE).is_file():
        return folder
    raise CheckpointError(
        f"{folder} is neither a gpt2lab checkpoint ({CONFIG_FILE} + {WEIGHTS_FILE}) nor a "
        f"Hugging Face GPT-2 folder (config.json + model.safetensors or pytorch_model.bin)"
    )
