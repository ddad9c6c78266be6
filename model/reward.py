"""A reward model: GPT-2 with its output layer swapped for a single number.

"Fine-Tuning Language Models from Human Preferences" (Ziegler et al., 2019) learns what
people prefer with a model that reads a prompt and a continuation and returns one score,
the reward. It is a GPT-2 whose final hidden state of the *last* token goes through a
linear layer with one output (the "scalar head") instead of the 50,257 next-token logits:

    tokens of prompt + continuation -> GPT-2 blocks -> hidden state of the last token
                                    -> Linear(n_embd, 1) -> reward

It is trained on comparisons: of the samples shown for a prompt, people picked one. The
loss treats the rewards as the logits of that choice (`choice_loss`): with two samples it
is the Bradley-Terry logistic loss, -log sigmoid(r_chosen - r_rejected); with four it is
the best-of-4 softmax loss of the original work.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from model.atomic_files import write_folder_atomically
from model.checkpoint import load_checkpoint, save_checkpoint
from model.errors import CheckpointError
from model.gpt import GPT
from model.tokenizer import Tokenizer

HEAD_FILE = "reward_head.safetensors"


class RewardModel(nn.Module):
    def __init__(self, backbone: GPT) -> None:
        super().__init__()
        self.backbone = backbone
        n_embd = backbone.config.n_embd
        self.head = nn.Linear(n_embd, 1)
        # As in the original work: a small random head (std 1/sqrt(n_embd + 1)) and a zero
        # bias, so untrained rewards start near zero and near equal.
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(n_embd + 1))
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx: (B, T) token ids, each row padded on the *right* after its `lengths[b]`
        real tokens. Returns the (B,) rewards.

        Right padding needs no attention mask: attention is causal, so the real tokens
        never see the padding that comes after them, and we read the hidden state of each
        row's last real token, which has seen the whole prompt and continuation.
        """
        hidden, _ = self.backbone.hidden_states(idx)
        last = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]
        return self.head(last).squeeze(-1)


def choice_loss(rewards: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """The loss of a reward model on comparisons. rewards: (B, N), the rewards of the N
    samples shown together; best: (B,), the index of the one the person chose.

    The rewards are read as logits of the choice: P(pick i) = softmax(rewards)_i. With
    N = 2 this is the Bradley-Terry model, P(chosen beats rejected) =
    sigmoid(r_chosen - r_rejected), and the loss is -log sigmoid(r_chosen - r_rejected);
    with N = 4 it is the best-of-4 loss of Ziegler et al. Only reward *differences*
    matter, so a constant added to every reward changes nothing.
    """
    return F.cross_entropy(rewards, best)


def pairwise_accuracy(rewards: torch.Tensor, best: torch.Tensor) -> tuple[int, int]:
    """How many (chosen, other) pairs the rewards rank right: the chosen sample scores
    strictly higher. Returns (right, total); with N samples each row holds N - 1 pairs."""
    chosen = rewards.gather(1, best.unsqueeze(1))
    others = torch.ones_like(rewards, dtype=torch.bool).scatter(1, best.unsqueeze(1), False)
    right = ((chosen > rewards) & others).sum().item()
    return int(right), int(others.sum().item())


def save_reward_model(model: RewardModel, folder: str | Path, tokenizer: Tokenizer) -> Path:
    """The backbone as an ordinary checkpoint (with the tokenizer), plus the head beside it;
    the folder appears whole or not at all."""
    head = {k: v.detach().contiguous() for k, v in model.head.state_dict().items()}

    def write(tmp: Path) -> None:
        save_checkpoint(model.backbone, tmp, {"kind": "reward-model"}, tokenizer=tokenizer)
        save_file(head, tmp / HEAD_FILE)

    write_folder_atomically(Path(folder), write)
    return Path(folder)


def load_reward_model(folder: str | Path) -> RewardModel:
    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file():
        raise CheckpointError(f"{folder} is not a reward model: {HEAD_FILE} is missing")
    model = RewardModel(load_checkpoint(folder))
    model.head.load_state_dict(load_file(folder / HEAD_FILE))
    return model
