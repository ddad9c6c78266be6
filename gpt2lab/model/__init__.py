"""The GPT-2 network, its tokenizers, sampling and checkpoints: plain PyTorch, no orchestration.

from gpt2lab.model import GPT, load_tokenizer
model = GPT.from_pretrained("path/to/checkpoint")   # ours, a Hugging Face folder, or a hub id
tokenizer = load_tokenizer("path/to/gpt2-vocab")
"""

from gpt2lab.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from gpt2lab.model.config import PRESETS, GPTConfig
from gpt2lab.model.errors import CheckpointError, Gpt2labError
from gpt2lab.model.generate import Completion, SamplingConfig, generate, stream
from gpt2lab.model.gpt import GPT
from gpt2lab.model.hf_checkpoint import export_hf_folder, load_hf_folder
from gpt2lab.model.tokenizer import Tokenizer, TokenizerError, load_tokenizer, train_bpe

__all__ = [
    "GPT",
    "PRESETS",
    "CheckpointError",
    "Completion",
    "GPTConfig",
    "Gpt2labError",
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
