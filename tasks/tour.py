"""Units of work for the one-minute tour: learn a BPE, fit a tiny GPT-2, sample from it.

Each is a plain, typed function (tested directly); the tour flow (`pipelines/tour.py`)
declares the Prefect tasks around them. The fit here is deliberately minimal, a few
hundred optimizer steps on one page of text, just enough to watch the loss fall and the
samples turn into words.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from model import GPT, GPTConfig, SamplingConfig, generate, load_model, save_checkpoint
from model.tokenizer import load_tokenizer, train_bpe
from tasks.fingerprint import fingerprint_folder


def tour_text() -> str:
    """One page of plain English about GPT-2, shipped with the package."""
    return resources.files("tasks").joinpath("data/tour_text.txt").read_text("utf-8")


@dataclass(frozen=True)
class TrainedTokenizer:
    path: Path
    fingerprint: str
    n_vocab: int


@dataclass(frozen=True)
class FittedModel:
    path: Path
    fingerprint: str
    losses: list[float]  # one per optimizer step
    n_parameters: int


def learn_tokenizer(text: str, vocab_size: int, out_dir: Path) -> TrainedTokenizer:
    """Train a byte-level BPE of `vocab_size` tokens on `text` (paragraph by paragraph)."""
    tokenizer = train_bpe(text.split("\n\n"), vocab_size, out_dir)
    return TrainedTokenizer(Path(out_dir), tokenizer.fingerprint, tokenizer.n_vocab)


def fit_tiny_model(
    text: str,
    tokenizer_dir: Path,
    config: GPTConfig,
    steps: int,
    out_dir: Path,
    *,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> FittedModel:
    """Initialise a GPT-2 and take `steps` AdamW steps on random windows of `text`.

    Saves the checkpoint with the tokenizer files beside it, so that the folder alone is
    enough to sample from (`gpt2lab generate --model <folder>`).
    """
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    window = min(config.block_size, len(data) - 1)
    model = GPT(config.replace(vocab_size=tokenizer.n_vocab))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)

    losses = []
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - window, (batch_size,))
        x = torch.stack([data[s : s + window] for s in starts])
        y = torch.stack([data[s + 1 : s + 1 + window] for s in starts])  # the next tokens
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    metadata = {"steps": steps, "tokenizer": tokenizer.fingerprint}
    save_checkpoint(model, out_dir, metadata, tokenizer=tokenizer)
    return FittedModel(Path(out_dir), fingerprint_folder(out_dir), losses, model.num_parameters())


def sample_texts(model_dir: Path, prompts: list[str], sampling: SamplingConfig) -> list[str]:
    """Continue each prompt with the model and tokenizer stored in `model_dir`."""
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    completions = generate(
        model,
        [tokenizer.encode(p) for p in prompts],
        sampling,
        eot_token=tokenizer.eot_token,
    )
    return [tokenizer.decode(c.tokens) for c in completions]
