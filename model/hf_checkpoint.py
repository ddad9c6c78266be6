"""Converting between our GPT and Hugging Face's GPT-2 folder layout.

A Hugging Face GPT-2 folder holds `config.json` (a GPT2Config) and the weights in
`model.safetensors` or, in older uploads, `pytorch_model.bin`. The tensor names match ours
(both come from OpenAI's code) with two differences:
  - OpenAI wrote the linear layers as "Conv1D", which stores the weight as (in, out);
    `nn.Linear` stores (out, in), so those four matrices per block are transposed;
  - old uploads drop the `transformer.` prefix and carry two non-weight buffers per block
    (`attn.bias`, the causal mask, and `attn.masked_bias`), which we skip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from model.atomic_files import write_folder_atomically
from model.checkpoint import TIED_KEY, load_state_into
from model.config import GPTConfig
from model.errors import CheckpointError
from model.gpt import GPT
from model.tokenizer import Tokenizer

HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
_CONV1D = re.compile(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_MASK_BUFFERS = re.compile(r"\.attn\.(bias|masked_bias)$")
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")


def config_from_hf(hf: dict[str, Any], source: str) -> GPTConfig:
    """Our GPTConfig from a Hugging Face GPT2Config dict, refusing variants we don't build."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{source}: model_type is {hf['model_type']!r}, not 'gpt2'")
    n_embd = hf.get("n_embd", 768)
    unsupported = {
        "activation_function": hf.get("activation_function", "gelu_new") not in _GELU_TANH,
        "n_inner": hf.get("n_inner") not in (None, 4 * n_embd),
        "scale_attn_by_inverse_layer_idx": hf.get("scale_attn_by_inverse_layer_idx", False),
        "scale_attn_weights": not hf.get("scale_attn_weights", True),
        "tie_word_embeddings": not hf.get("tie_word_embeddings", True),
    }
    for field, bad in unsupported.items():
        if bad:
            raise CheckpointError(
                f"{source}: {field}={hf.get(field)!r} is a GPT-2 variant gpt2lab does not build"
            )
    try:
        return GPTConfig(
            vocab_size=hf.get("vocab_size", 50257),
            block_size=hf.get("n_positions", 1024),
            n_layer=hf.get("n_layer", 12),
            n_head=hf.get("n_head", 12),
            n_embd=n_embd,
            dropout=hf.get("resid_pdrop", 0.1),
            layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        )
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None


def config_to_hf(config: GPTConfig, eot_token: int | None = None) -> dict[str, Any]:
    """A GPT2Config dict that `transformers.GPT2LMHeadModel.from_pretrained` accepts."""
    eot = config.vocab_size - 1 if eot_token is None else eot_token
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
    }


def _read_hf_weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    for name in HF_WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                return load_file(path), path
            # weights_only: refuse pickled code, load plain tensors only.
            return torch.load(path, map_location="cpu", weights_only=True), path
    raise CheckpointError(
        f"Hugging Face folder {folder} has {HF_CONFIG_FILE} but no weights "
        f"({' or '.join(HF_WEIGHT_FILES)})"
    )


def load_hf_folder(folder: str | Path) -> GPT:
    """Import a Hugging Face GPT-2 folder as our GPT."""
    folder = Path(folder)
    config_path = folder / HF_CONFIG_FILE
    try:
        hf_config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: cannot read a GPT-2 config ({err})") from None
    config = config_from_hf(hf_config, str(config_path))
    hf_state, weights_path = _read_hf_weights(folder)

    state = {}
    for name, tensor in hf_state.items():
        if _MASK_BUFFERS.search(name):
            continue
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        if _CONV1D.search(name):
            tensor = tensor.t()
        state[name] = tensor.contiguous()
    return load_state_into(GPT(config), state, str(weights_path))


def export_hf_folder(model: GPT, folder: str | Path, *, tokenizer: Tokenizer | None = None) -> Path:
    """Write `model` as a Hugging Face GPT-2 folder (config.json + model.safetensors), with
    the tokenizer's vocab.json + merges.txt when one is given."""
    state = {}
    for name, tensor in model.state_dict().items():
        if name == TIED_KEY:
            continue  # tied to transformer.wte.weight; transformers re-ties it on load
        if _CONV1D.search(name):
            tensor = tensor.t()
        state[name] = tensor.detach().contiguous()

    def write(tmp: Path) -> None:
        save_file(state, tmp / HF_WEIGHT_FILES[0], metadata={"format": "pt"})
        eot = tokenizer.eot_token if tokenizer is not None else None
        hf_config = config_to_hf(model.config, eot)
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(tmp, layout="huggingface")

    write_folder_atomically(Path(folder), write)
    return Path(folder)
