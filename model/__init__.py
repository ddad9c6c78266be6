"""The GPT-2 network, its tokenizers, sampling and checkpoints: plain PyTorch, no orchestration.

    from model import load_model, load_tokenizer
    model = load_model("path/to/checkpoint")   # ours, a Hugging Face folder, or a hub id
    tokenizer = load_tokenizer("path/to/gpt2-vocab")

Names are imported on first use: code that needs only the tokenizer (a corpus worker, say)
does not pay for importing PyTorch. (No public name may equal a submodule's name: importing
the submodule would set the package attribute to the module and hide the name.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_WHERE = {
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "PRESETS": "config",
    "GPTConfig": "config",
    "CheckpointError": "errors",
    "Gpt2labError": "errors",
    "Completion": "sampling",
    "SamplingConfig": "sampling",
    "generate": "sampling",
    "stream": "sampling",
    "GPT": "gpt",
    "export_hf_folder": "hf_checkpoint",
    "load_hf_folder": "hf_checkpoint",
    "load_model": "loading",
    "Tokenizer": "tokenizer",
    "TokenizerError": "tokenizer",
    "load_tokenizer": "tokenizer",
    "train_bpe": "tokenizer",
}

__all__ = [
    "CheckpointError",
    "Completion",
    "GPT",
    "GPTConfig",
    "Gpt2labError",
    "PRESETS",
    "SamplingConfig",
    "Tokenizer",
    "TokenizerError",
    "export_hf_folder",
    "generate",
    "load_checkpoint",
    "load_hf_folder",
    "load_model",
    "load_tokenizer",
    "save_checkpoint",
    "stream",
    "train_bpe",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"model.{_WHERE[name]}"), name)
    globals()[name] = value  # next time, a plain attribute
    return value


if TYPE_CHECKING:  # for editors and type checkers: the same names, imported eagerly
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.config import PRESETS, GPTConfig
    from model.errors import CheckpointError, Gpt2labError
    from model.gpt import GPT
    from model.hf_checkpoint import export_hf_folder, load_hf_folder
    from model.loading import load_model
    from model.sampling import Completion, SamplingConfig, generate, stream
    from model.tokenizer import Tokenizer, TokenizerError, load_tokenizer, train_bpe
