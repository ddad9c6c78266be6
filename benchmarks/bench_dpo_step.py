"""A CPU DPO training step: gpt2lab's DPO vs the same loss on transformers' GPT-2.

One optimizer step on 8 (chosen, rejected) pairs: the policy reads 16 sequences of 128
tokens (a 32-token prompt and a 96-token continuation), the sequence log-probabilities
of the continuations go into the DPO loss with precomputed reference log-probabilities,
then backward and AdamW. The peer computes the log-probabilities as TRL's DPO trainer
does: the full log-softmax over the vocabulary, then the target tokens picked out. Same
weights, same tokens, 4 layers x 256, the full GPT-2 vocabulary, fp32.
"""

from __future__ import annotations

import torch

from benchmarks.common import paired_medians, report, twin_models
from model.dpo import dpo_loss, sequence_log_probs

PAIRS, PROMPT, CONTINUATION = 8, 32, 96
SHAPE = dict(
    vocab_size=50257,
    n_positions=256,
    n_embd=256,
    n_layer=4,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)


def peer_sequence_log_probs(model, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=idx).logits[:, :-1]
    per_token = torch.gather(logits.log_softmax(-1), 2, idx[:, 1:].unsqueeze(2)).squeeze(2)
    return (per_token * mask[:, 1:]).sum(-1)


def main(repeats: int = 5) -> float:
    ours, peer = twin_models(SHAPE)
    ours.eval()  # as in training: no dropout (there is none here anyway)
    peer.eval()
    idx = torch.randint(0, SHAPE["vocab_size"], (2 * PAIRS, PROMPT + CONTINUATION))
    mask = torch.zeros_like(idx)
    mask[:, PROMPT:] = 1
    reference = -torch.rand(2 * PAIRS) * 10 - 400  # stands in for the frozen model's
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    opt_peer = torch.optim.AdamW(peer.parameters(), lr=1e-5)

    def step(model, optimizer, log_probs):
        def run():
            lp = log_probs(model, idx, mask)
            out = dpo_loss(lp[:PAIRS], lp[PAIRS:], reference[:PAIRS], reference[PAIRS:], 0.1)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    # Both compute the same numbers (checked once, before timing).
    with torch.no_grad():
        a, b = sequence_log_probs(ours, idx, mask), peer_sequence_log_probs(peer, idx, mask)
        assert torch.allclose(a, b, rtol=1e-4), (a, b)
    t_ours, t_peer = paired_medians(
        step(ours, opt_ours, sequence_log_probs),
        step(peer, opt_peer, peer_sequence_log_probs),
        warmup=1,
        repeats=repeats,
    )
    n = 2 * PAIRS * (PROMPT + CONTINUATION)
    print(f"threads: {torch.get_num_threads()}, median of {repeats} steps each")
    return report(
        "DPO step, 4x256, 8 pairs x 128 tokens, vocab 50257, fp32 (tokens/s)",
        "tokens/s",
        "transformers GPT2LMHeadModel + TRL-style log-probs",
        n / t_peer,
        n / t_ours,
        target=1.0,
    )


if __name__ == "__main__":
    main()
