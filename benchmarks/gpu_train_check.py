"""GPU check of the training loop, for a machine with an NVIDIA H100 or H200: GPT-2 124M
throughput and MFU of `train()` (target: MFU >= 0.40), and whether a run stopped after
step 25 and resumed repeats the uninterrupted run's losses of steps 26-50.

Not part of `make bench` (which runs on the CPU); run it by hand on a CUDA machine:

    python -m benchmarks.gpu_train_check [--micro-batch 16] [--batch-tokens 131072]
        [--steps 30] [--skip 8] [--gpt2-dir tests/data/gpt2] [--keep DIR]

Data: no corpus is needed. Random token ids (uint16, GPT-2's 50,257-token vocabulary) are
written straight into a tokens folder with the encode flow's own ShardWriter and
tokens.json record (50M train, 1M validation tokens by default), and GPT-2's tokenizer
files are copied into its tokenizer/ folder, where `train()` loads the tokenizer from.
Training reads only the ids: random ids cost the GPU exactly what text would, and the
loss simply stays near ln(50257) = 10.8. Without GPT-2's files (tests/data/gpt2 or
--gpt2-dir) a stand-in byte-level BPE (the 256 bytes + <|endoftext|>) goes there instead;
a run then only differs in the tokenizer copied into its checkpoints.

Throughput: `train(model="gpt2", context=1024, precision="bf16", compile=True)`, reading
the tokens/s and MFU it reports per optimizer step (timed from data
loading to the end of the optimizer step, after a CUDA synchronize). The first steps
compile the model and warm the allocator; they are left out of the medians. MFU counts
6 FLOPs per matrix parameter plus attention's per token, against the dense bf16 peak of
the card's data sheet (989 TFLOP/s for H100/H200 SXM; see loop._PEAK_BF16).

Resume: three runs of 50 steps with the same settings (bf16, not compiled, a smaller batch
so they take seconds): A and A2 uninterrupted, B interrupted by a KeyboardInterrupt raised
right after its step-25 checkpoint is written, then started again in the same folder,
which resumes from that checkpoint. On the CPU the resumed losses equal the uninterrupted
ones exactly (a test checks it); on a GPU some kernels (the embedding's backward, for one)
add in a varying order, so two uninterrupted runs may already differ: A vs A2 shows that
run-to-run floor, A vs B the resume, and both are printed, within 1e-6 and within 1e-3.

Exits 2 at once, with one line, where no CUDA GPU is present; 1 if a run is broken (a
step missing, a loss not finite); 0 otherwise, targets met or not (a miss is a finding).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_tokenizer import GPT2_DIR

MFU_TARGET = 0.40
VOCAB, EOT = 50257, 50256
NEVER = 1_000_000  # an interval no run here reaches
TOKENIZER_FILES = ("encoder.json", "vocab.bpe")
RESUME_STEPS, RESUME_AT = 50, 25


# ---------------------------------------------------------------------------------------
# A synthetic tokens folder


def write_random_tokens(
    folder: Path, train_tokens: int, val_tokens: int, gpt2_dir: Path, seed: int = 0
) -> str:
    """A tokens folder of uniformly random GPT-2 ids, written as the encode flow writes
    one (ShardWriter, tokens.json last), with a tokenizer in tokenizer/. Returns which
    tokenizer went there."""
    from tasks.encode.token_shards import (
        META_FILE,
        TOKENIZER_DIR,
        ShardWriter,
        TokenShardsMeta,
        shard_name,
        tokens_fingerprint,
        write_json_atomically,
    )

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    shard_tokens = 25_000_000  # 50 MB files, as the encode flow's parts are tens of MB
    infos = []
    for split, total in (("train", train_tokens), ("val", val_tokens)):
        for part, first in enumerate(range(0, total, shard_tokens)):
            count = min(shard_tokens, total - first)
            with ShardWriter(folder / shard_name(split, part), "uint16") as writer:
                writer.write(rng.integers(0, VOCAB, count, dtype=np.uint16))
                # "documents" are made up: random ids have none; one per shard.
                infos.append(writer.commit(split=split, part=part, documents=1, text_bytes=0))
    which = _tokenizer_into(folder / TOKENIZER_DIR, gpt2_dir)
    totals = {s: sum(i.tokens for i in infos if i.split == s) for s in ("train", "val")}
    meta = TokenShardsMeta(
        dtype="uint16",
        vocab_size=VOCAB,
        eot_token=EOT,
        tokenizer={"name": which, "fingerprint": "synthetic", "source": str(gpt2_dir)},
        corpus={"path": "synthetic", "fingerprint": f"random-uint16-seed-{seed}"},
        split={"val_fraction": val_tokens / (train_tokens + val_tokens), "by": "synthetic"},
        documents={s: sum(1 for i in infos if i.split == s) for s in totals},
        tokens=totals,
        text_bytes=dict.fromkeys(totals, 0),
        shards=infos,
        fingerprint=tokens_fingerprint("uint16", "synthetic", infos),
    )
    write_json_atomically(folder / META_FILE, meta)
    return which


def _tokenizer_into(folder: Path, gpt2_dir: Path) -> str:
    """GPT-2's files copied into `folder`, or, without them, a stand-in byte-level BPE
    (`train()` loads a tokenizer from the tokens folder, but trains on the ids alone)."""
    if all((gpt2_dir / name).is_file() for name in TOKENIZER_FILES):
        folder.mkdir()
        for name in TOKENIZER_FILES:
            shutil.copyfile(gpt2_dir / name, folder / name)
        return f"GPT-2's, from {gpt2_dir}"
    from model.tokenizer.train import MIN_VOCAB_SIZE, train_bpe

    train_bpe(["a stand-in tokenizer: bytes only"], MIN_VOCAB_SIZE, folder)
    return f"a stand-in byte-level BPE ({gpt2_dir} has no {' / '.join(TOKENIZER_FILES)})"


# ---------------------------------------------------------------------------------------
# Runs


def run_train(settings: Any, run_dir: Path, stop_after_checkpoint: int | None = None) -> dict:
    """train() into `run_dir`: per-step losses, tokens/s and MFU by step number; with
    `stop_after_checkpoint`, a KeyboardInterrupt is raised as soon as that step's
    checkpoint is on disk (as a crash or a kill right after it would leave the run)."""
    from tasks.train.checkpoints import BEST
    from tasks.train.loop import Callbacks, StepMetrics, train

    steps: dict[int, dict[str, float | None]] = {}

    def on_step(step: int, metrics: StepMetrics) -> None:
        steps[step] = dataclasses.asdict(metrics)

    def on_checkpoint(step: int, path: Path) -> None:
        if step == stop_after_checkpoint and path.name != BEST:
            raise KeyboardInterrupt(f"stopped after the step-{step} checkpoint")

    started = time.perf_counter()
    interrupted = False
    try:
        train(settings, run_dir, Callbacks(on_step=on_step, on_checkpoint=on_checkpoint))
    except KeyboardInterrupt:
        if stop_after_checkpoint is None:
            raise
        interrupted = True
    return {"steps": steps, "seconds": time.perf_counter() - started, "interrupted": interrupted}


def throughput(args: argparse.Namespace, tokens: Path, root: Path) -> tuple[bool, list[str]]:
    from tasks.train.settings import TrainSettings

    settings = TrainSettings(
        tokens=tokens,
        model="gpt2",
        context=1024,
        micro_batch=args.micro_batch,
        batch_tokens=args.batch_tokens,
        max_steps=args.steps,
        learning_rate=6e-4,
        warmup_steps=min(10, args.steps),
        eval_interval=NEVER,
        eval_batches=1,
        checkpoint_interval=NEVER,
        precision="bf16",
        compile=True,
        device="cuda",
    )
    passes = settings.accumulation_steps(settings.context)
    print(
        f"\n== Throughput: GPT-2 124M, context 1024, {args.micro_batch} sequences x {passes} "
        f"passes = {args.batch_tokens:,} tokens per step, bf16, torch.compile, "
        f"{args.steps} steps",
        flush=True,
    )
    run = run_train(settings, root / "throughput")
    problems = _missing_steps("throughput", run, args.steps)
    timed = [run["steps"][s] for s in sorted(run["steps"]) if s > args.skip]
    if not timed:
        return False, problems + [f"no step after the {args.skip} skipped ones"]
    rates = [m["tokens_per_s"] for m in timed]
    print(
        f"  whole run {run['seconds']:.0f} s (compile, {args.steps} steps, final evaluation "
        "and checkpoints)"
    )
    print(
        "  first steps, s: "
        + ", ".join(
            f"{settings.batch_tokens / run['steps'][s]['tokens_per_s']:.2f}"
            for s in sorted(run["steps"])[: args.skip]
        )
    )
    print(
        f"  tokens/s, median of steps {args.skip + 1}-{args.steps}: "
        f"{statistics.median(rates):,.0f}  (range {min(rates):,.0f}-{max(rates):,.0f}; "
        f"{settings.batch_tokens / statistics.median(rates):.3f} s/step)"
    )
    losses = [m["loss"] for m in run["steps"].values()]
    print(
        f"  loss: step 1 {losses[0]:.3f}, step {len(losses)} {losses[-1]:.3f} (random ids: "
        f"about ln({VOCAB}) = {math.log(VOCAB):.3f} is the floor)"
    )
    if timed[0]["mfu"] is None:
        print(
            f"  MFU: not reported ({torch.cuda.get_device_name()} has no bf16 peak in "
            "loop._PEAK_BF16); no verdict"
        )
        return True, problems
    mfu = [m["mfu"] for m in timed]
    verdict = "meets" if statistics.median(mfu) >= MFU_TARGET else "MISSES"
    print(
        f"  MFU, median: {statistics.median(mfu):.3f}  (range {min(mfu):.3f}-{max(mfu):.3f}; "
        f"target >= {MFU_TARGET}: {verdict})"
    )
    return True, problems


def resume(args: argparse.Namespace, tokens: Path, root: Path) -> list[str]:
    from tasks.train.settings import TrainSettings

    def settings(checkpoint_interval: int) -> TrainSettings:
        # Only checkpoint_interval differs between the runs, and a resumed run may change it.
        return TrainSettings(
            tokens=tokens,
            model="gpt2",
            context=1024,
            micro_batch=args.resume_micro_batch,
            batch_tokens=args.resume_micro_batch * 1024 * 2,
            max_steps=RESUME_STEPS,
            learning_rate=6e-4,
            warmup_steps=10,
            eval_interval=NEVER,
            eval_batches=1,
            checkpoint_interval=checkpoint_interval,
            precision="bf16",
            compile=False,
            device="cuda",
            seed=1,
        )

    print(
        f"\n== Resume: {RESUME_STEPS} steps, GPT-2 124M, context 1024, "
        f"{args.resume_micro_batch} sequences x 2 passes per step, bf16, not compiled",
        flush=True,
    )
    a = run_train(settings(NEVER), root / "resume-a")
    a2 = run_train(settings(NEVER), root / "resume-a2")
    first = run_train(settings(RESUME_AT), root / "resume-b", stop_after_checkpoint=RESUME_AT)
    second = run_train(settings(RESUME_AT), root / "resume-b")  # same folder: resumes
    for name in ("resume-a", "resume-a2", "resume-b"):
        shutil.rmtree(root / name, ignore_errors=True)  # GBs of checkpoints each
    print(
        f"  A {a['seconds']:.0f} s, A2 {a2['seconds']:.0f} s, B {first['seconds']:.0f} s "
        f"to the interrupt + {second['seconds']:.0f} s resumed"
    )
    problems = _missing_steps("A", a, RESUME_STEPS) + _missing_steps("A2", a2, RESUME_STEPS)
    if not first["interrupted"] or sorted(first["steps"]) != list(range(1, RESUME_AT + 1)):
        problems.append(
            f"B's first session was not stopped after step {RESUME_AT} "
            f"(steps {sorted(first['steps'])})"
        )
    resumed = list(range(RESUME_AT + 1, RESUME_STEPS + 1))
    if sorted(second["steps"]) != resumed:
        problems.append(
            f"B's second session ran steps {sorted(second['steps'])}, not "
            f"{RESUME_AT + 1}-{RESUME_STEPS}: it did not resume"
        )
    if problems:
        return problems

    def losses(run: dict, steps: list[int]) -> np.ndarray:
        return np.array([run["steps"][s]["loss"] for s in steps])

    before = list(range(1, RESUME_AT + 1))
    comparisons = [
        (
            f"A vs A2, steps 1-{RESUME_STEPS} (run-to-run floor)",
            losses(a, before + resumed),
            losses(a2, before + resumed),
        ),
        (
            f"A vs B, steps 1-{RESUME_AT} (before the stop)",
            losses(a, before),
            losses(first, before),
        ),
        (
            f"A vs B, steps {RESUME_AT + 1}-{RESUME_STEPS} (resumed)",
            losses(a, resumed),
            losses(second, resumed),
        ),
    ]
    for label, x, y in comparisons:
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            problems.append(f"{label}: a loss is not finite")
            continue
        diff = float(np.abs(x - y).max())
        print(
            f"  {label:<40}: max |difference| {diff:.3e}   equal: "
            f"{'yes' if diff == 0 else 'no'}, within 1e-6: {'yes' if diff <= 1e-6 else 'no'}, "
            f"within 1e-3: {'yes' if diff <= 1e-3 else 'no'}"
        )
    print(
        f"  losses at steps {RESUME_AT + 1}, {RESUME_STEPS}: A "
        f"{a['steps'][RESUME_AT + 1]['loss']:.6f}, "
        f"{a['steps'][RESUME_STEPS]['loss']:.6f}; B "
        f"{second['steps'][RESUME_AT + 1]['loss']:.6f}, "
        f"{second['steps'][RESUME_STEPS]['loss']:.6f}"
    )
    return problems


def _guarded(name: str, part: Callable[[], tuple[bool, list[str]]]) -> tuple[bool, list[str]]:
    """Run one part; a failure (a compile error, out of memory) is reported with its
    traceback and the other part still runs: one device session has to give both."""
    try:
        return part()
    except Exception as error:
        traceback.print_exc()
        return False, [f"the {name} part failed: {type(error).__name__}: {error}"]


def _missing_steps(name: str, run: dict, steps: int) -> list[str]:
    problems = []
    if sorted(run["steps"]) != list(range(1, steps + 1)):
        problems.append(f"{name}: reported steps {sorted(run['steps'])}, not 1-{steps}")
    bad = [s for s, m in run["steps"].items() if not math.isfinite(m["loss"])]
    if bad:
        problems.append(f"{name}: loss not finite at steps {bad}")
    return problems


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--micro-batch", type=int, default=16, help="throughput: sequences per pass"
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=16 * 1024 * 8,
        help="throughput: tokens per optimizer step",
    )
    parser.add_argument("--steps", type=int, default=30, help="throughput: optimizer steps")
    parser.add_argument(
        "--skip",
        type=int,
        default=8,
        help="throughput: first steps left out of the medians (compilation, warm-up)",
    )
    parser.add_argument(
        "--resume-micro-batch",
        type=int,
        default=8,
        help="resume: sequences per pass (2 passes per step)",
    )
    parser.add_argument("--train-tokens", type=int, default=50_000_000)
    parser.add_argument("--val-tokens", type=int, default=1_000_000)
    parser.add_argument(
        "--gpt2-dir",
        type=Path,
        default=GPT2_DIR,
        help="folder with GPT-2's encoder.json and vocab.bpe",
    )
    parser.add_argument("--no-resume", action="store_true", help="skip the resume check")
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it")
    args = parser.parse_args(argv)
    if args.batch_tokens % (args.micro_batch * 1024):
        parser.error("--batch-tokens must be a multiple of --micro-batch x 1024")

    if not torch.cuda.is_available():
        print(
            "gpu_train_check: no CUDA GPU here (torch.cuda.is_available() is False); "
            "run it on an NVIDIA H100/H200 machine"
        )
        return 2
    if args.keep:
        return _check(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="gpu-train-check-") as folder:
        return _check(args, Path(folder))


def _check(args: argparse.Namespace, root: Path) -> int:
    started = time.perf_counter()
    props = torch.cuda.get_device_properties(0)
    print(
        f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}",
        flush=True,
    )
    tokens = root / "tokens"
    which = write_random_tokens(tokens, args.train_tokens, args.val_tokens, args.gpt2_dir)
    print(
        f"tokens: {args.train_tokens:,} train + {args.val_tokens:,} val random ids in "
        f"{tokens}, tokenizer: {which} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )

    ran, problems = _guarded("throughput", lambda: throughput(args, tokens, root))
    shutil.rmtree(root / "throughput", ignore_errors=True)  # its checkpoints, GBs
    gc.collect()
    torch.cuda.empty_cache()
    if not args.no_resume:
        _, resume_problems = _guarded("resume", lambda: (True, resume(args, tokens, root)))
        problems += resume_problems
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(f"\nwhole check: {time.perf_counter() - started:.0f} s")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 0 if ran and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
