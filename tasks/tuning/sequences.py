"""Turning (prompt, continuation) texts into the padded tensors the models read."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model import Tokenizer


@dataclass
class Sequences:
    """Rows of prompt + continuation tokens, padded on the right."""

    idx: torch.Tensor  # (B, T) token ids
    lengths: torch.Tensor  # (B,) real tokens per row
    continuation_mask: torch.Tensor  # (B, T) 1 on the continuation's tokens, else 0

    def to(self, device: torch.device) -> Sequences:
        return Sequences(
            self.idx.to(device), self.lengths.to(device), self.continuation_mask.to(device)
        )


def encode_pair(
    tokenizer: Tokenizer,
    prompt: str,
    continuation: str,
    max_tokens: int,
    *,
    end_with_eot: bool = False,
) -> tuple[list[int], int]:
    """The ids of prompt + continuation and how many belong to the prompt.

    Too long for the model: the continuation (what was judged) is kept whole and the
    prompt loses its beginning, as when sampling. An empty prompt becomes <|endoftext|>,
    the token GPT-2 saw before every document. `end_with_eot` appends <|endoftext|> to
    the continuation, so that a reward model reads every text at the same kind of token.
    """
    context = tokenizer.encode(prompt) or [tokenizer.eot_token]
    target = tokenizer.encode(continuation) + ([tokenizer.eot_token] if end_with_eot else [])
    target = target[: max_tokens - 1]
    context = context[-(max_tokens - len(target)) :]
    return context + target, len(context)


def pad_right(rows: Sequence[tuple[list[int], int]]) -> Sequences:
    """Stack (ids, prompt length) rows into one right-padded batch."""
    width = max(len(ids) for ids, _ in rows)
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(rows):
        idx[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, prompt_length : len(ids)] = 1
    lengths = torch.tensor([len(ids) for ids, _ in rows], dtype=torch.long)
    return Sequences(idx, lengths, mask)


def shuffled_batches(
    count: int, batch_size: int, rng: random.Random, groups: Sequence[int] | None = None
) -> list[list[int]]:
    """One epoch of minibatches of the indices 0..count-1, in a random order. With
    `groups` (a group number per index), a minibatch only holds indices of one group, so
    that comparisons of two and of four samples are never stacked together."""
    order = list(range(count))
    rng.shuffle(order)
    by_group: dict[int, list[int]] = {}
    for index in order:
        by_group.setdefault(groups[index] if groups else 0, []).append(index)
    batches = [
        members[start : start + batch_size]
        for members in by_group.values()
        for start in range(0, len(members), batch_size)
    ]
    rng.shuffle(batches)
    return batches
