"""Last-word likelihood for a whole batch of rows in one forward pass.

`likelihood.continuation_nll` reads one (context, target) pair per forward pass. This
module reads a batch: the rows are padded on the right to the longest one and go through
the network together. Right padding is safe without an attention mask: a causal model's
position i only ever sees positions 0..i, so the padding after a row's last real token
cannot change any position that is scored.

Only the target's positions go through the output layer. That layer (hidden width x
50,257) is about a third of GPT-2 124M's work per token and most of a small network's,
and a LAMBADA row scores one or two tokens out of ~80: projecting every position, as a
plain forward pass does, spends that share on logits nobody reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from model import GPT

Pair = tuple[Sequence[int], Sequence[int]]  # (context ids, target ids)


@torch.no_grad()
def batched_continuation_nll(model: GPT, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
    """For each (context, target): -log p(target | context), and whether greedy decoding
    would have produced exactly `target`; the same numbers as `continuation_nll` row by row,
    from one forward pass over all `pairs` (the caller chooses the batch size).

    A row longer than the model's context keeps its end (the target and as much context
    as fits), as `continuation_nll` does."""
    if not pairs:
        return []
    room = model.config.block_size + 1  # +1: the last token is predicted, never read
    inputs, targets = [], []
    for row, (context, target) in enumerate(pairs):
        if not context or not target:
            empty = "context" if not context else "target"
            raise ValueError(f"batched_continuation_nll: row {row} has an empty {empty}")
        if len(target) > model.config.block_size:
            raise ValueError(
                f"batched_continuation_nll: row {row}: target of {len(target)} tokens is "
                f"longer than the model's context (block_size={model.config.block_size})"
            )
        ids = (list(context) + list(target))[-room:]
        inputs.append(ids[:-1])
        targets.append(list(target))

    width = max(len(ids) for ids in inputs)
    device = model.lm_head.weight.device
    # Padding id 0: any id would do, its positions are never scored nor seen by scored ones.
    batch = torch.zeros((len(inputs), width), dtype=torch.long, device=device)
    for row, ids in enumerate(inputs):
        batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    hidden, _ = model.hidden_states(batch)  # (B, T, C)

    # The hidden state that predicts each target token: the target's n tokens are predicted
    # at the row's last n input positions.
    rows = [row for row, target in enumerate(targets) for _ in target]
    positions = [
        len(ids) - len(target) + k
        for ids, target in zip(inputs, targets, strict=True)
        for k in range(len(target))
    ]
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
    log_probs = F.log_softmax(model.lm_head(picked).float(), dim=-1)  # (sum of targets, V)
    wanted = torch.tensor([t for target in targets for t in target], device=device)
    token_nll = -log_probs.gather(1, wanted.unsqueeze(1)).squeeze(1)
    token_greedy = log_probs.argmax(dim=-1) == wanted

    results, start = [], 0
    for target in targets:
        end = start + len(target)
        results.append((token_nll[start:end].sum().item(), bool(token_greedy[start:end].all())))
        start = end
    return results
