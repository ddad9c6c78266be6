"""Reading token shards for training and evaluation.

A language model learns from windows of `context + 1` consecutive tokens: the first
`context` are the input x, and the same window shifted by one is the target y (each
position predicts the next token). Windows may span a document boundary; the
<|endoftext|> between documents teaches the model where one text ends.

- `RandomWindows`: training batches of windows at random places in the train shards,
  as nanoGPT samples them, from memory-mapped files (the corpus never has to fit in
  memory). Seeded, and its state can be saved, so a resumed run continues the sequence.
- `sequential_windows`: every token of a split exactly once, in order, for a validation
  loss that is the same from run to run.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from tasks.encode.token_shards import Split, TokenShardsError, open_shards

Batch = tuple[torch.Tensor, torch.Tensor]  # x and y, each (batch, context) int64


def _to_batch(windows: np.ndarray, device: str | torch.device) -> Batch:
    """(rows, context + 1) token windows -> inputs and next-token targets on `device`."""
    tokens = torch.from_numpy(windows.astype(np.int64))
    x, y = tokens[:, :-1], tokens[:, 1:]
    if torch.device(device).type == "cuda":
        # Pinned host memory lets the copy to the GPU overlap with computation.
        return (
            x.pin_memory().to(device, non_blocking=True),
            y.pin_memory().to(device, non_blocking=True),
        )
    return x.contiguous().to(device), y.contiguous().to(device)


class RandomWindows:
    """Endless random training batches from one split of a tokens folder.

    Each window lies inside one shard; a shard is picked with a probability proportional
    to the number of windows it holds, so every start position in the split is equally
    likely.

        windows = RandomWindows("workspace/tokens/webtext", context=1024, batch_size=8)
        x, y = windows.batch()
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        context: int,
        batch_size: int,
        split: Split = "train",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if context < 1 or batch_size < 1:
            raise ValueError(f"context and batch_size must be >= 1, got {context}, {batch_size}")
        self.context, self.batch_size, self.device = context, batch_size, device
        shards = open_shards(folder, split)
        # Only shards long enough for one window of context + 1 tokens can serve.
        self.shards = [shard for shard in shards if len(shard) > context]
        if not self.shards:
            total = sum(len(shard) for shard in shards)
            raise TokenShardsError(
                f"{folder}: split {split!r} has no shard with more than {context} tokens "
                f"({total:,} tokens in {len(shards)} shards): lower the context or add text"
            )
        starts = np.array([len(shard) - context for shard in self.shards], dtype=np.float64)
        self.shard_weights = starts / starts.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self) -> Batch:
        return self._read(self._draw())

    def batches_for_step(self, count: int, world: int = 1, rank: int = 0) -> list[Batch]:
        """The `count` micro-batches of one optimizer step, of which this process takes
        every `world`-th, starting at `rank`. Every process draws all the positions, so
        the random sequence, and with it the data of each step, is the same whether one
        process does all the passes or several share them."""
        drawn = [self._draw() for _ in range(count)]
        return [self._read(positions) for i, positions in enumerate(drawn) if i % world == rank]

    def _draw(self) -> list[tuple[int, int]]:
        """(shard, start) of each window of one batch."""
        which = self.rng.choice(len(self.shards), size=self.batch_size, p=self.shard_weights)
        return [
            (int(index), int(self.rng.integers(0, len(self.shards[index]) - self.context)))
            for index in which
        ]

    def _read(self, positions: list[tuple[int, int]]) -> Batch:
        rows = np.empty((len(positions), self.context + 1), dtype=np.int64)
        for row, (index, start) in enumerate(positions):
            rows[row] = self.shards[index][start : start + self.context + 1]
        return _to_batch(rows, self.device)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.batch()

    def state_dict(self) -> dict[str, Any]:
        """The random generator's state: save it with a checkpoint to resume the sequence."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def sequential_windows(
    folder: str | os.PathLike[str],
    *,
    context: int,
    batch_size: int,
    split: Split = "val",
    device: str | torch.device = "cpu",
) -> Iterator[Batch]:
    """Every token of `split` once, in order: windows of context + 1 tokens that start
    `context` tokens apart, so each token is predicted exactly once (the split is read as
    one sequence, across shard boundaries). The last batch may be smaller; tokens after
    the last whole window (fewer than `context`) are left out.
    """
    shards = open_shards(folder, split)
    ends = np.cumsum([len(shard) for shard in shards]).tolist()  # exclusive end of each
    total = ends[-1] if ends else 0
    n_windows = max(0, (total - 1) // context)
    if n_windows == 0:
        raise TokenShardsError(
            f"{folder}: split {split!r} has {total:,} tokens, fewer than one window of "
            f"{context + 1}"
        )

    def read(start: int, length: int) -> np.ndarray:
        """Tokens start..start+length-1 of the whole split, across shard boundaries."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard = bisect.bisect_right(ends, start)
        while filled < length:
            shard_start = ends[shard - 1] if shard else 0
            offset = start + filled - shard_start
            piece = shards[shard][offset : offset + length - filled]
            out[filled : filled + len(piece)] = piece
            filled += len(piece)
            shard += 1
        return out

    for first in range(0, n_windows, batch_size):
        last = min(first + batch_size, n_windows)
        rows = [read(window * context, context + 1) for window in range(first, last)]
        yield _to_batch(np.stack(rows), device)
