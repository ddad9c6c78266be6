"""Small GPT-2s for model tests: random weights, saved the way transformers saves them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_HF = dict(
    vocab_size=50257,
    n_positions=128,
    n_embd=64,
    n_layer=2,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


@pytest.fixture(scope="session")
def hf_model():
    """A randomly initialised transformers.GPT2LMHeadModel (the reference implementation)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1234)
    return GPT2LMHeadModel(GPT2Config(**TINY_HF)).eval()


@pytest.fixture(scope="session")
def hf_folder(hf_model, tmp_path_factory) -> Path:
    """`hf_model` written with `save_pretrained` (config.json + model.safetensors)."""
    folder = tmp_path_factory.mktemp("hf-gpt2")
    hf_model.save_pretrained(folder)
    return folder


@pytest.fixture
def random_tokens() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randint(0, TINY_HF["vocab_size"], (3, 40), generator=generator)
