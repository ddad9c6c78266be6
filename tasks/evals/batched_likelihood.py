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
from tasks.evals.likelihood import Continuation, continuation_nll

Pair = tuple[Sequence[int], Sequence[int]]  # (context ids, target ids)


@torch.no_grad()
def batched_continuation_nll(model: GPT, pairs: Sequence[Pair]) -> list[Continuation]:
    """For each (context, target) the `Continuation` that `continuation_nll` gives (the
    target's -log p, whether greedy decoding writes it, the greedy token after it), from
    one forward pass over all `pairs` (the caller chooses the batch size).

    A row longer than the model's context keeps its end, as lm-evaluation-harness cuts
    it; the token after such a target needs a window of its own, read separately."""
    if not pairs:
        return []
    window = model.config.block_size
    inputs, targets, fits = [], [], []
    for row, (context, target) in enumerate(pairs):
        if not context or not target:
            empty = "context" if not context else "target"
            raise ValueError(f"batched_continuation_nll: row {row} has an empty {empty}")
        if len(target) > window:
            raise ValueError(
                f"batched_continuation_nll: row {row}: target of {len(target)} tokens is "
                f"longer than the model's context (block_size={window})"
            )
        ids = list(context) + list(target)
        # Fits: read it all, so the last position also predicts the token after the target.
        fits.append(len(ids) <= window)
        inputs.append(ids if fits[-1] else ids[-(window + 1) : -1])
        targets.append(list(target))

    width = max(len(ids) for ids in inputs)
    device = model.lm_head.weight.device
    # Padding id 0: any id would do, its positions are never scored nor seen by scored ones.
    batch = torch.zeros((len(inputs), width), dtype=torch.long, device=device)
    for row, ids in enumerate(inputs):
        batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    hidden, _ = model.hidden_states(batch)  # (B, T, C)

    # Per row, the positions whose output is read: one per target token (the hidden state
    # that predicts it), then, when the row fits, the last one (the token after it).
    rows, positions = [], []
    for row, (ids, target, whole) in enumerate(zip(inputs, targets, fits, strict=True)):
        first = len(ids) - len(target) - (1 if whole else 0)
        wanted = range(first, first + len(target) + (1 if whole else 0))
        rows += [row] * len(wanted)
        positions += list(wanted)
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(positions, device=device)]
    log_probs = F.log_softmax(model.lm_head(picked).float(), dim=-1)
    best = log_probs.argmax(dim=-1).tolist()

    results, start = [], 0
    for row, (target, whole) in enumerate(zip(targets, fits, strict=True)):
        end = start + len(target)
        wanted = torch.tensor(target, device=device)
        scored = log_probs[start:end]
        nll = -scored.gather(1, wanted.unsqueeze(1)).sum().item()
        greedy = best[start:end] == target
        if whole:
            next_token = best[end]
            end += 1
        else:
            next_token = continuation_nll(model, list(pairs[row][0]), target).next_token
        results.append(Continuation(nll, greedy, next_token))
        start = end
    return results
