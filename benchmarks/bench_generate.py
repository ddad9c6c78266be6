"""Greedy generation with a KV cache: gpt2lab's `generate` vs transformers' `generate`.

Same weights (4 layers x 256 wide, GPT-2 vocabulary), batch of 8 prompts of 64 tokens,
128 new tokens each, greedy, no early stop. Both use their KV cache.
"""

from __future__ import annotations

import torch

from benchmarks.bench_train_step import SHAPE
from benchmarks.common import paired_medians, report, twin_models
from model import SamplingConfig, generate

BATCH, PROMPT, NEW = 8, 64, 128


def main(repeats: int = 5) -> float:
    ours, peer = twin_models(SHAPE)
    ours.eval()
    peer.eval()
    prompts = torch.randint(0, SHAPE["vocab_size"] - 1, (BATCH, PROMPT))
    greedy = SamplingConfig(max_new_tokens=NEW, temperature=0)

    def run_ours():
        return generate(ours, prompts.tolist(), greedy)

    def run_peer():
        with torch.no_grad():
            return peer.generate(
                prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                do_sample=False,
                pad_token_id=50256,
            )

    # Same tokens out, or the comparison means nothing.
    theirs = run_peer()[:, PROMPT:].tolist()
    assert [c.tokens for c in run_ours()] == theirs, "outputs differ"

    t_ours, t_peer = paired_medians(run_ours, run_peer, warmup=1, repeats=repeats)
    n = BATCH * NEW
    print(f"threads: {torch.get_num_threads()}, median of {repeats} runs each")
    return report(
        "Greedy generation, batch 8, prompt 64, 128 new tokens, KV cache (new tokens/s)",
        "tokens/s",
        "transformers generate",
        n / t_peer,
        n / t_ours,
        target=1.0,
    )


if __name__ == "__main__":
    main()
