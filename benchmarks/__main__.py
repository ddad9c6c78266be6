"""`make bench`: every benchmark, each against its named peer in the same run.

Run one alone with `python -m benchmarks.bench_train_step` (or bench_generate,
bench_tokenizer, bench_dedup, bench_dpo_step, bench_train_loop, bench_corpus,
bench_corpus_realistic, bench_encode, bench_comparison_page, bench_eval_throughput,
bench_explain). Figures are medians of alternating runs; on a busy machine they move, the
ratios much less. bench_explain has no peer: its figures stand against targets.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks import (
    bench_comparison_page,
    bench_dedup,
    bench_dpo_step,
    bench_eval_throughput,
    bench_evaluate,
    bench_explain,
    bench_generate,
    bench_tokenizer,
    bench_train_loop,
    bench_train_step,
)


def main() -> int:
    bench_train_step.main()
    bench_dpo_step.main()
    bench_generate.main()
    # Generation on evaluation batches, and a cached repeat of an evaluation vs its first run.
    evaluate = bench_evaluate.main([])
    # LAMBADA scoring vs lm-evaluation-harness, TL;DR sampling on long prompts vs transformers.
    throughput = bench_eval_throughput.main([])
    status = bench_tokenizer.main([])
    bench_dedup.main([])
    # The whole training loop, data loading included; it encodes its own tokens folder.
    loop = bench_train_loop.main([])
    # The corpus benchmark fetches only its own mini-web on 127.0.0.1. It runs in a fresh
    # interpreter: its peak-memory figures would otherwise start from this process's size
    # (PyTorch and the models above), which a child inherits until it replaces itself.
    corpus = subprocess.run([sys.executable, "-m", "benchmarks.bench_corpus"], check=False)
    # The same flow on realistic pages (about 25 KB, 100-300 ms of latency, 100 loopback
    # hosts) with 1 and 2 Dask workers, fresh for the same reasons.
    realistic = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_corpus_realistic"], check=False
    )
    # The encode benchmark, too: it measures peak memory, and it must point Hugging Face's
    # caches at its temporary folder before `datasets` is first imported, which the
    # benchmarks above may already have done in this process.
    encode = subprocess.run([sys.executable, "-m", "benchmarks.bench_encode"], check=False)
    # The comparison page under 50 clients voting at once; its servers run in their own
    # processes on 127.0.0.1, its clients in threads here.
    page = bench_comparison_page.main([])
    # The `gpt2lab explain` page on GPT-2 124M's shape: time and size against targets.
    explain = bench_explain.main([])
    return (
        status
        or evaluate
        or throughput
        or loop
        or corpus.returncode
        or realistic.returncode
        or encode.returncode
        or page
        or explain
    )


if __name__ == "__main__":
    sys.exit(main())
