"""Evaluation throughput: LAMBADA scoring against lm-evaluation-harness (target >= 1.0x) and
TL;DR sampling against transformers' `generate` (target >= 1.0x), same model, same rows.

One random GPT (4 layers x 256 wide x 4 heads, GPT-2's vocabulary of 50,257, 1,024
positions, fp32, CPU) is exported with `export_hf_folder`; the peers load that folder, so
every side holds the very same weights. Each side takes turns; figures are medians after a
warm-up.

1. LAMBADA loglikelihood, tokens/s (context + target tokens scored per second).
   Rows: the task's local passages, then distinct generated ones (sentences of those
   passages, shuffled, each passage ending with one of their last sentences) up to
   --rows. Every row is different, so the harness's reuse of identical contexts never
   applies.
   - gpt2lab, `evaluate_task` on the `lambada` task with those rows, no output cache,
     batch_size 8 (reading, encoding, scoring and the bootstrap interval included): one
     forward pass per batch (tasks/evals/batched_likelihood.py);
   - lm-evaluation-harness `HFLM(pretrained=<export>, batch_size=8, device="cpu")`
     `.loglikelihood` on the same (context, target) pairs (its tokenization included; it
     sorts rows by length to pad less, its own choice).
   Correctness, checked on the last timed round's outputs, every row: -log p from
   gpt2lab and from the harness agree to 1e-4 relative and greedy flags match.

2. cnn-dailymail-tldr sampling, new tokens/s. The task's prompts (article + `\\nTL;DR:`),
   its articles lengthened with their own sentences to 300-1,200 tokens (news articles
   are ~800 on average), then cut to fit the context as the runner cuts them (the
   article's opening and the hint, 1,024 - 100 tokens); batch 8, 100 new tokens, top-k 2
   at temperature 1, KV cache.
   - gpt2lab `generate` with the task's sampling settings and the runner's seed per row,
     token lists in (it pads on the left itself, inside the timing), no end-of-text stop
     so every row gets 100 tokens;
   - transformers `GPT2LMHeadModel.generate(do_sample=True, top_k=2, temperature=1)` on
     the same ids left-padded with an attention mask, `min_new_tokens` = `max_new_tokens`,
     `eos_token_id=None`.
   Checked once: 100 new tokens on every row on both sides, and greedy decoding of a few
   tokens agrees token for token (same weights, same positions under the padding).

    python -m benchmarks.bench_eval_throughput [--rows 200] [--repeats 3] [--threads N]

Run from the project root; GPT-2's files are read from tests/data/gpt2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.bench_evaluate import PAD, left_padded
from benchmarks.bench_tokenizer import GPT2_DIR
from benchmarks.common import alternating_medians, report
from model import (
    GPT,
    GPTConfig,
    SamplingConfig,
    Tokenizer,
    export_hf_folder,
    generate,
    load_tokenizer,
)
from tasks.evals.data import task_rows
from tasks.evals.output_cache import row_seed
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task, fit_prompt, measurement_from_text, sampling_for
from tasks.evals.task import DataSource, EvalTask, Row

TARGET = 1.0  # ours / peer, for both comparisons
CONFIG = GPTConfig(vocab_size=50257, block_size=1024, n_layer=4, n_head=4, n_embd=256, dropout=0)
BATCH = 8  # evaluate_task's default batch size, and the harness's here
LAMBADA, SUMMARY = "lambada", "cnn-dailymail-tldr"
ARTICLE_TOKENS = (300, 450, 600, 750, 900, 1000, 1100, 1200)  # before the cut; 8 = one batch
CHECKPOINT = "bench-eval-throughput:random-4x256-seed0"
SAME_AS_HARNESS = 1e-4  # relative tolerance on -log p


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def lambada_rows(task: EvalTask, count: int, seed: int = 0) -> list[Row]:
    """The task's local passages, then distinct generated ones, `count` in all."""
    local = task_rows(task)
    pool = [s for row in local for s in sentences(row["text"])[:-1]]
    endings = [sentences(row["text"])[-1] for row in local]
    rng = random.Random(seed)
    rows, seen = list(local[:count]), {row["text"] for row in local}
    while len(rows) < count:
        text = " ".join(rng.sample(pool, rng.randint(2, 5)) + [rng.choice(endings)])
        if text not in seen:
            seen.add(text)
            rows.append({"text": text})
    return rows


def with_rows(task: EvalTask, rows: Sequence[Row], folder: Path, name: str) -> EvalTask:
    """`task` reading `rows` from a JSON-lines file in `folder`."""
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return dataclasses.replace(task, data=DataSource(local=path))


def summary_prompts(task: EvalTask, tokenizer: Tokenizer, room: int) -> list[str]:
    """The task's prompts for its articles, lengthened to ARTICLE_TOKENS with their own
    sentences (seeded), encoded and cut to `room` tokens as the runner does."""
    rows = task_rows(task)
    pool = [s for row in rows for s in sentences(row["article"])]
    rng = random.Random(0)
    texts = []
    for i, length in enumerate(ARTICLE_TOKENS):
        row = dict(rows[i % len(rows)])
        while len(tokenizer.encode(row["article"])) < length:
            row["article"] += " " + rng.choice(pool)
        texts.append(task.prompt(row, []))
    return texts


def relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def lambada_comparison(
    ours: GPT, folder: Path, tokenizer: Tokenizer, work: Path, args, warnings: list[str]
) -> None:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        warnings.append("lambada: lm-evaluation-harness is not installed (pip install lm-eval)")
        return

    (lambada,) = get_tasks([LAMBADA])
    assert lambada.continuation is not None
    rows = lambada_rows(lambada, args.rows)
    task = with_rows(lambada, rows, work, "lambada")
    pairs = [lambada.continuation(row) for row in rows]
    # Warm-up on the longest rows: first calls, and the allocator sized for the widest batch.
    longest = sorted(range(len(rows)), key=lambda i: -len(rows[i]["text"]))[: BATCH * 2]
    warmup_task = with_rows(lambada, [rows[i] for i in longest], work, "lambada-warmup")
    tokens = sum(len(tokenizer.encode(c)) + len(tokenizer.encode(t)) for c, t in pairs)
    harness = HFLM(pretrained=str(folder), batch_size=BATCH, device="cpu", dtype="float32")
    requests = [
        Instance(request_type="loglikelihood", doc=row, arguments=pair, idx=i)
        for i, (row, pair) in enumerate(zip(rows, pairs, strict=True))
    ]
    outputs: dict[str, list[tuple[float, bool]]] = {}

    def ours_scores(on: EvalTask = task) -> None:
        result = evaluate_task(on, ours, tokenizer, CHECKPOINT, None, batch_size=BATCH)
        measured = [
            measurement_from_text("loglikelihood", e["raw_output"]) for e in result.examples
        ]
        outputs["gpt2lab"] = [(m.nll, m.greedy) for m in measured]

    def peer(on: Sequence = requests) -> None:
        answers = harness.loglikelihood(list(on), disable_tqdm=True)
        outputs["harness"] = [(-logprob, greedy) for logprob, greedy in answers]

    ours_scores(warmup_task)
    peer([requests[i] for i in longest])
    t_ours, t_peer = alternating_medians([ours_scores, peer], warmup=0, repeats=args.repeats)
    # The last round's outputs, every row: the same numbers, or the timings mean nothing.
    agree = check_lambada(outputs, warnings)

    lengths = sorted(len(tokenizer.encode(c)) + len(tokenizer.encode(t)) for c, t in pairs)
    print(
        f"\nLAMBADA loglikelihood: {len(rows)} distinct rows of {lengths[0]}-{lengths[-1]} "
        f"tokens ({tokens:,} in all), batch {BATCH}; -log p and greedy flags agree with the "
        f"harness on every row (to {SAME_AS_HARNESS:g} relative): {agree}"
    )
    report(
        "LAMBADA, gpt2lab evaluate_task (context + target tokens/s)",
        "tokens/s",
        "lm-eval HFLM",
        tokens / t_peer,
        tokens / t_ours,
        TARGET,
    )


def check_lambada(outputs: dict[str, list[tuple[float, bool]]], warnings: list[str]) -> str:
    """Compare gpt2lab's (-log p, greedy) per row with the harness's: "yes" when all
    agree, else "NO" and a warning naming the rows."""
    bad = [
        row
        for row, ((a, greedy_a), (b, greedy_b)) in enumerate(
            zip(outputs["gpt2lab"], outputs["harness"], strict=True)
        )
        if relative_gap(a, b) > SAME_AS_HARNESS or greedy_a != greedy_b
    ]
    if bad:
        warnings.append(f"lambada: gpt2lab differs from the harness on rows {bad[:5]}")
        return "NO"
    return "yes"


def summary_comparison(ours: GPT, peer, tokenizer: Tokenizer, args, warnings: list[str]) -> None:
    (task,) = get_tasks([SUMMARY])
    sampling = sampling_for(task)  # the very settings evaluate_task uses (seed included)
    new = sampling.max_new_tokens
    room = CONFIG.block_size - new
    texts = summary_prompts(task, tokenizer, room)
    prompts = [fit_prompt(task, tokenizer, text, room) for text in texts]
    # The runner's seed per row: each row samples from a generator of its own.
    seeds = [row_seed(sampling.seed or 0, task.name, task.version, text) for text in texts]
    ids, mask = left_padded(prompts)
    width = ids.size(1)

    def run_ours(settings: SamplingConfig = sampling):
        return generate(ours, prompts, settings, eot_token=None, seeds=seeds)

    def run_peer(max_new: int = new, **settings):
        settings = settings or dict(do_sample=True, top_k=sampling.top_k, temperature=1.0)
        torch.manual_seed(0)  # the peer samples from the global generator; ours is seeded
        with torch.no_grad():
            return peer.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                min_new_tokens=max_new,
                eos_token_id=None,
                pad_token_id=PAD,
                use_cache=True,
                **settings,
            )

    # Equal work, checked once: `new` tokens on every row; and the same model under the
    # padding (greedy tokens agree), which sampling alone could not show.
    if any(len(c.tokens) != new for c in run_ours()):
        warnings.append(f"{SUMMARY}: gpt2lab did not write {new} tokens on every row")
    if run_peer().size(1) - width != new:
        warnings.append(f"{SUMMARY}: transformers did not write {new} tokens on every row")
    greedy = SamplingConfig(max_new_tokens=4, temperature=0)
    ours_greedy = [c.tokens for c in run_ours(greedy)]
    peer_greedy = run_peer(4, do_sample=False)[:, width:].tolist()
    if ours_greedy != peer_greedy:
        warnings.append(f"{SUMMARY}: greedy tokens differ between gpt2lab and transformers")

    t_ours, t_peer = alternating_medians([run_ours, run_peer], warmup=0, repeats=args.repeats)
    n = len(prompts) * new
    lengths = sorted(len(p) for p in prompts)
    report(
        f"{SUMMARY} sampling: batch {len(prompts)}, prompts {lengths[0]}-{lengths[-1]} tokens "
        f"(cut to {room}, left-padded), {new} new tokens, top-k {sampling.top_k}, "
        f"temperature {sampling.temperature:g}, KV cache (new tokens/s)",
        "tokens/s",
        "transformers generate",
        n / t_peer,
        n / t_ours,
        TARGET,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="LAMBADA rows (distinct)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for every side (default: torch's own)",
    )
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the harness's tokenizer
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads_before)


def _run(args: argparse.Namespace) -> int:
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars between the figures
    started = time.perf_counter()
    tokenizer = load_tokenizer(GPT2_DIR)
    torch.manual_seed(0)
    ours = GPT(CONFIG).eval()
    warnings: list[str] = []
    print(
        f"torch threads: {torch.get_num_threads()}; model 4x256, 4 heads, vocab 50,257, "
        f"1,024 positions, random weights, fp32; median of {args.repeats} runs each, "
        "taking turns, after a warm-up"
    )
    with tempfile.TemporaryDirectory(prefix="bench-eval-throughput-") as work:
        folder = export_hf_folder(ours, Path(work) / "hf-export", tokenizer=tokenizer)
        lambada_comparison(ours, folder, tokenizer, Path(work), args, warnings)
        peer = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
        summary_comparison(ours, peer, tokenizer, args, warnings)

    print(f"\n(bench_eval_throughput took {time.perf_counter() - started:.0f} s)")
    for warning in warnings:
        print(f"  WARNING: {warning}")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 1 if warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
