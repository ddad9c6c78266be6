"""A CPU training step (forward, backward, AdamW): gpt2lab's GPT vs transformers' GPT-2.

4 layers, 256 wide, 4 heads, context 256, batch 8, the full GPT-2 vocabulary, fp32, the
same weights, the same tokens, the same optimizer settings. At this size the 50,257-wide
output layer dominates the step.
"""

from __future__ import annotations

import torch

from benchmarks.common import paired_medians, report, twin_models
from model.loss import IGNORE_INDEX

BATCH, CONTEXT = 8, 256
SHAPE = dict(
    vocab_size=50257,
    n_positions=CONTEXT,
    n_embd=256,
    n_layer=4,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


def main(repeats: int = 5) -> float:
    ours, peer = twin_models(SHAPE)
    ours.train()
    peer.train()
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, CONTEXT))
    # Both predict the next token at the first CONTEXT - 1 positions.
    targets = torch.cat([tokens[:, 1:], torch.full((BATCH, 1), IGNORE_INDEX)], dim=1)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=0.1)
    opt_peer = torch.optim.AdamW(peer.parameters(), lr=1e-4, weight_decay=0.1)

    def step_ours():
        _, loss = ours(tokens, targets)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_peer():
        loss = peer(input_ids=tokens, labels=tokens).loss  # shifts labels internally
        loss.backward()
        opt_peer.step()
        opt_peer.zero_grad(set_to_none=True)

    t_ours, t_peer = paired_medians(step_ours, step_peer, warmup=1, repeats=repeats)
    n = BATCH * CONTEXT
    print(f"threads: {torch.get_num_threads()}, median of {repeats} steps each")
    return report(
        "Training step, 4x256, ctx 256, batch 8, vocab 50257, fp32 (tokens/s)",
        "tokens/s",
        "transformers GPT2LMHeadModel",
        n / t_peer,
        n / t_ours,
        target=1.2,
    )


if __name__ == "__main__":
    main()
