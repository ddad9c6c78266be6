"""The `gpt2lab explain` page on GPT-2 124M's shape: time to write it and its size
(target < 10 s and < 5 MB for a 64-token prompt).

Workload: a GPT with GPT-2 small's configuration (12 layers, 12 heads, 768 wide, GPT-2's
vocabulary of 50,257; random weights: the page's cost does not depend on what the weights
are), GPT-2's own tokenizer files (tests/data/gpt2), a 64-token prompt, 8 sampling steps
at temperature 0.8, top-k 40, top-p 0.95. The page then holds 12 x 12 = 144 attention
heatmaps of 64 x 64, the causal-mask figure, 64 rows of next-token bars and 8 sampling
steps.

Figures (medians of `--repeats` runs, on the CPU): the arrays (`explain_prompt`: one pass
of the prompt with attention weights, 8 generation steps), the rendering
(`write_explain_page`: 145 PNGs, the HTML), their sum (the page, once the model and the
tokenizer are loaded), and the page's size. The wall time depends on what else the machine
runs, so the CPU time the page took (all threads) and the load average are printed too:
on an idle machine the wall time is about the CPU time divided by the threads used. For
scale, the size that the 144 heatmaps would take as SVG with one <rect> per visible cell,
the other way to draw them inline.

No peer: nothing else writes this page; the figures stand against the targets alone.

    python -m benchmarks.bench_explain [--repeats 3] [--tokens 64] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_tokenizer import GPT2_DIR
from model import GPT, GPTConfig, SamplingConfig, load_tokenizer
from model.explain import explain_prompt
from model.tokenizer import ReferenceBPE
from reports.explain_page import write_explain_page

TARGET_SECONDS = 10.0
TARGET_BYTES = 5_000_000
TEXT = (
    "Byte pair encoding merges the most frequent pairs of symbols, and a language model "
    "predicts one token at a time: each position attends only to the positions before it, "
    "because the causal mask sets every score in the future to minus infinity. "
)


def prompt_of(tokenizer, n_tokens: int) -> str:
    """A prompt of exactly `n_tokens` GPT-2 tokens (the text repeated, then cut)."""
    ids = tokenizer.encode(TEXT * (1 + n_tokens // 20))[:n_tokens]
    prompt = tokenizer.decode(ids)
    if len(tokenizer.encode(prompt)) != n_tokens:
        raise RuntimeError(f"could not make a prompt of {n_tokens} tokens")
    return prompt


def svg_rect_bytes(weights: np.ndarray) -> int:
    """Bytes of one heatmap as SVG with one <rect> per non-zero cell (lower triangle)."""
    rows, cols = np.nonzero(weights)
    return sum(
        len(f'<rect x="{c}" y="{r}" width="1" height="1" fill="#{int(255 * w):02x}3a80"/>')
        for r, c, w in zip(rows, cols, weights[rows, cols], strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--tokens", type=int, default=64, help="prompt length in tokens")
    parser.add_argument("--steps", type=int, default=8, help="sampling steps shown")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    torch.manual_seed(0)
    model = GPT(GPTConfig()).eval()  # GPT-2 small: 12 layers, 12 heads, 768 wide
    tokenizer, bpe = load_tokenizer(GPT2_DIR), ReferenceBPE(GPT2_DIR)
    setup = time.perf_counter() - start
    prompt = prompt_of(tokenizer, args.tokens)
    sampling = SamplingConfig(args.steps, temperature=0.8, top_k=40, top_p=0.95, seed=0)

    arrays, render, cpu, size = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="gpt2lab-bench-explain-") as tmp:
        page = Path(tmp) / "explain.html"
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            ex = explain_prompt(model, tokenizer, bpe, prompt, sampling)
            t1 = time.perf_counter()
            write_explain_page(ex, page, model_name="GPT-2 124M shape, random weights")
            t2, c2 = time.perf_counter(), time.process_time()
            arrays.append(t1 - t0)
            render.append(t2 - t1)
            cpu.append(c2 - c0)
            size = page.stat().st_size
    svg = sum(svg_rect_bytes(head) for layer in ex.attention for head in layer)

    total = [a + r for a, r in zip(arrays, render, strict=True)]
    seconds = statistics.median(total)
    ok_time, ok_size = seconds < TARGET_SECONDS, size < TARGET_BYTES
    n_layer, n_head = ex.attention.shape[:2]
    print(f"\ngpt2lab explain, GPT-2 124M shape (random weights), {len(ex.ids)}-token prompt")
    print(f"  {n_layer} x {n_head} heatmaps, {len(ex.trace.steps)} sampling steps, CPU,")
    print(f"  {torch.get_num_threads()} threads; medians of {args.repeats} runs")
    print(f"  model + tokenizer ready (not in the page time): {setup:6.2f} s")
    print(f"  arrays (explain_prompt)                       : {statistics.median(arrays):6.2f} s")
    print(f"  page (write_explain_page)                     : {statistics.median(render):6.2f} s")
    verdict = "meets" if ok_time else "MISSES"
    print(
        f"  page written in                               : {seconds:6.2f} s   "
        f"(target < {TARGET_SECONDS:.0f} s: {verdict})"
    )
    verdict = "meets" if ok_size else "MISSES"
    print(
        f"  page size                                     : {size / 1e6:6.2f} MB  "
        f"(target < {TARGET_BYTES / 1e6:.0f} MB: {verdict})"
    )
    print(f"  CPU time of the page, all threads             : {statistics.median(cpu):6.2f} s")
    print(f"  load average while measuring (1 min)          : {os.getloadavg()[0]:6.2f}")
    print(f"  the heatmaps as SVG rects instead of PNG      : {svg / 1e6:6.2f} MB")
    return 0 if ok_time and ok_size else 1


if __name__ == "__main__":
    sys.exit(main())
