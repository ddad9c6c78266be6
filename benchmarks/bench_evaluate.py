"""Evaluation speed: generation on an evaluation batch against transformers' `generate`
(target >= 1.0x), and a cached repeat of an evaluation against its first run (>= 20x).

1. Generation throughput. An evaluation spends its time in `generate`, on batches of
   prompts of different lengths (padded on the left) with the task's own settings, so this
   is timed on exactly that: the prompts the tasks build from their local rows, encoded
   with GPT-2's tokenizer, against transformers' `GPT2LMHeadModel.generate` holding the
   very same weights (`twin_models`), in the same run, the two taking turns.
   - `cnn-dailymail-tldr`: its 4 articles twice (8 prompts of 71-93 tokens, each ending
     `\\nTL;DR:`), 100 new tokens, top-k 2 sampling at temperature 1.
   - `wmt14-en-fr`: its 8 prompts (5 example pairs + the sentence; 117-137 tokens),
     64 new tokens, greedy. Greedy outputs must match token for token.
   Both sides produce exactly the task's number of new tokens for every row, so they do the
   same work: ours with no end-of-text token and no stop strings, the peer with
   `eos_token_id=None` and `min_new_tokens` = `max_new_tokens`. The peer gets its left-padded
   ids and attention mask ready made (as its tokenizer would hand them over); ours takes
   token lists and pads them itself, inside the timing. Both use their KV cache.
   Figures: new tokens/s (rows x new tokens / seconds), medians of alternating runs after
   one warm-up each.

2. A cached repeat. `evaluate_task` on `cnn-dailymail-tldr` (4 rows) and `wmt14-en-fr`
   (8 rows) with our model and a fresh `OutputCache` in a temporary folder: the first run
   generates every output and stores it, the repeat (a new connection to the same file, as
   a second `gpt2lab evaluate` would open it) finds them all. Both timings include opening
   the cache, reading the rows, building the prompts, post-processing and scoring
   (rouge-score with the Lede-3/Random-3 baselines, or sacrebleu): the repeat skips only
   the generation, which is the point of the cache. The first run here is the task's real
   generation (end-of-text and stop strings on), so it can stop early. A warm-up evaluation
   of each task (its own cache, not timed) takes the scorers' imports and first-call costs
   out of both. Medians over rounds, each round a new cache.

Workload: 4 layers x 256 wide x 4 heads, GPT-2's vocabulary (50,257), 1,024 positions (so
every prompt fits whole), random weights, fp32, CPU.

    python -m benchmarks.bench_evaluate [--repeats 5] [--rounds 3] [--threads N]

Run from the project root; GPT-2's files are read from tests/data/gpt2.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.bench_tokenizer import GPT2_DIR
from benchmarks.common import paired_medians, report, twin_models
from model import GPT, Tokenizer, generate, load_tokenizer
from tasks.evals.data import read_rows
from tasks.evals.output_cache import OutputCache
from tasks.evals.registry import get_tasks
from tasks.evals.runner import TaskResult, evaluate_task, sampling_for
from tasks.evals.task import EvalTask

GENERATION_TARGET = 1.0  # ours / peer, new tokens/s
CACHE_TARGET = 20.0  # first run / cached repeat, seconds
SHAPE = dict(
    vocab_size=50257,
    n_positions=1024,
    n_embd=256,
    n_layer=4,
    n_head=4,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)
SUMMARY, TRANSLATION = "cnn-dailymail-tldr", "wmt14-en-fr"
BATCH = 8  # rows per generation batch: evaluate_task's default batch size
PAD = 50256  # the peer's padding id; masked out, so any id would do
CHECKPOINT = "bench-evaluate:random-4x256-seed0"  # the cache key's model fingerprint


def task_prompts(task: EvalTask, tokenizer: Tokenizer) -> list[list[int]]:
    """The task's prompts for its local rows, built as evaluate_task builds them, repeated
    up to BATCH rows (the summary task has 4 articles), encoded."""
    rows = read_rows(task.data.local, task.fields)
    pool = read_rows(task.data.few_shot_local, task.fields) if task.few_shot else []
    texts = [task.prompt(row, task.few_shot_examples(pool, i)) for i, row in enumerate(rows)]
    texts = (texts * BATCH)[:BATCH]
    return [tokenizer.encode(text) for text in texts]


def left_padded(prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The peer's input: ids padded on the left and the attention mask that hides the pad."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def generation_mode(
    task: EvalTask, ours: GPT, peer, tokenizer: Tokenizer, repeats: int, warnings: list[str]
) -> float:
    """Time one task's generation on both sides; report and return the ratio."""
    prompts = task_prompts(task, tokenizer)
    sampling = sampling_for(task)  # the very settings evaluate_task uses (seed included)
    new = sampling.max_new_tokens
    ids, mask = left_padded(prompts)
    width = ids.size(1)
    if sampling.greedy:
        peer_settings = dict(do_sample=False)
    else:
        peer_settings = dict(do_sample=True, top_k=sampling.top_k, temperature=sampling.temperature)

    def run_ours():
        # No end-of-text token, no stop strings: every row runs to `new` tokens.
        return generate(ours, prompts, sampling, eot_token=None)

    def run_peer():
        torch.manual_seed(0)  # the peer samples from the global generator; ours is seeded too
        with torch.no_grad():
            return peer.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=new,
                eos_token_id=None,
                pad_token_id=PAD,
                use_cache=True,
                **peer_settings,
            )

    # Equal work, checked once before the timing: `new` tokens for every row on both sides,
    # and when greedy the very same tokens (same weights, same positions under the padding).
    ours_out = [c.tokens for c in run_ours()]
    peer_out = run_peer()[:, width:].tolist()
    if any(len(t) != new for t in ours_out) or any(len(t) != new for t in peer_out):
        warnings.append(f"{task.name}: not {new} new tokens on every row")
    if sampling.greedy and ours_out != peer_out:
        same = sum(a == b for a, b in zip(ours_out, peer_out, strict=True))
        warnings.append(f"{task.name}: greedy outputs differ ({same}/{len(prompts)} rows agree)")

    t_ours, t_peer = paired_medians(run_ours, run_peer, warmup=1, repeats=repeats)
    n = len(prompts) * new
    lengths = sorted(len(p) for p in prompts)
    mode = "greedy" if sampling.greedy else f"top-k {sampling.top_k} sampling"
    return report(
        f"{task.name} generation: batch {len(prompts)}, prompts {lengths[0]}-{lengths[-1]} "
        f"tokens (left-padded), {new} new tokens, {mode}, KV cache (new tokens/s)",
        unit="tokens/s",
        peer_name="transformers generate",
        peer=n / t_peer,
        ours=n / t_ours,
        target=GENERATION_TARGET,
    )


def timed_evaluation(
    task: EvalTask, model: GPT, tokenizer: Tokenizer, cache_path: Path
) -> tuple[float, TaskResult]:
    """Seconds for one `evaluate_task` with the cache at `cache_path`, opening included."""
    started = time.perf_counter()
    with OutputCache(cache_path) as cache:
        result = evaluate_task(task, model, tokenizer, CHECKPOINT, cache, batch_size=BATCH)
    return time.perf_counter() - started, result


def cache_round(
    task: EvalTask, model: GPT, tokenizer: Tokenizer, warnings: list[str]
) -> tuple[float, float]:
    """A first run and its repeat on a new cache: their seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as folder:
        path = Path(folder) / "cache.db"
        first_s, first = timed_evaluation(task, model, tokenizer, path)
        repeat_s, repeat = timed_evaluation(task, model, tokenizer, path)
    rows = len(first.examples)
    if (first.generated, first.from_cache) != (rows, 0):
        warnings.append(f"{task.name}: first run generated {first.generated} of {rows}")
    if (repeat.generated, repeat.from_cache) != (0, rows):
        warnings.append(f"{task.name}: repeat took {repeat.from_cache} of {rows} from the cache")
    if repeat.examples != first.examples or repeat.scores != first.scores:
        warnings.append(f"{task.name}: the repeat's outputs or scores differ from the first run")
    return first_s, repeat_s


def cache_measurement(
    task: EvalTask, model: GPT, tokenizer: Tokenizer, rounds: int, warnings: list[str]
) -> float:
    """Medians of first runs and cached repeats over `rounds`; report and return the ratio."""
    cache_round(task, model, tokenizer, [])  # warm-up: the scorers' imports and first calls
    firsts, repeats = [], []
    for _ in range(rounds):
        first_s, repeat_s = cache_round(task, model, tokenizer, warnings)
        firsts.append(first_s)
        repeats.append(repeat_s)
    first, repeat = statistics.median(firsts), statistics.median(repeats)
    ratio = first / repeat
    verdict = "meets" if ratio >= CACHE_TARGET else "MISSES"
    rows = len(read_rows(task.data.local, task.fields))
    new = task.generation.max_new_tokens
    print(
        f"\n{task.name} evaluation, {rows} rows, up to {new} new tokens each: first run vs "
        f"cached repeat (median of {rounds} rounds, a new cache each)"
    )
    print(
        f"  first run (all generated)   : {first * 1000:9.1f} ms  "
        f"({min(firsts) * 1000:.1f}-{max(firsts) * 1000:.1f})"
    )
    print(
        f"  repeat (all from the cache) : {repeat * 1000:9.1f} ms  "
        f"({min(repeats) * 1000:.1f}-{max(repeats) * 1000:.1f})"
    )
    print(
        f"  ratio first/repeat          : {ratio:9.1f}x   (target >= {CACHE_TARGET:.0f}x: "
        f"{verdict})"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed generations per side")
    parser.add_argument("--rounds", type=int, default=3, help="first run + repeat pairs")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for both sides (default: torch's own)",
    )
    args = parser.parse_args(argv)

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # the same for both sides
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads_before)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    tokenizer = load_tokenizer(GPT2_DIR)
    ours, peer = twin_models(SHAPE)
    ours.eval()
    peer.eval()
    summary, translation = get_tasks([SUMMARY, TRANSLATION])
    print(
        f"torch threads: {torch.get_num_threads()}; model 4x256, 4 heads, vocab 50,257, "
        f"1,024 positions, random weights; median of {args.repeats} runs each, alternating, "
        "after one warm-up each"
    )
    warnings: list[str] = []

    # 1. Generation on an evaluation batch, ours vs transformers.
    for task in (summary, translation):
        generation_mode(task, ours, peer, tokenizer, args.repeats, warnings)

    # 2. A cached repeat vs the first run.
    print(
        "\nfirst run and repeat both include opening the cache, prompts, post-processing "
        "and scoring (rouge-score / sacrebleu); only generation is skipped"
    )
    for task in (summary, translation):
        cache_measurement(task, ours, tokenizer, args.rounds, warnings)

    print(f"\n(bench_evaluate took {time.perf_counter() - started:.0f} s)")
    for warning in warnings:
        print(f"  WARNING: {warning}")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 1 if warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
