"""CPU tokens/s of gpt2lab's whole training step (data loading, forward, backward, gradient
clipping, AdamW) against a minimal training loop around transformers' `GPT2LMHeadModel`,
with the same shape, data, batch and optimizer, in the same run: target >= 1.2x.

bench_train_step times the model alone (forward, backward, optimizer step on one fixed
batch). This one times what a user waits for: `train()` itself, reading random windows of
a real tokens folder through its memory-mapped loader, setting the scheduled learning
rate, clipping and stepping. The peer is the loop people write around Hugging Face's
model, nanoGPT-style, so the figure says what our loop is worth next to the usual way.

Workload: the GPT-2 vocabulary (50,257; the tokens come from GPT-2's own files), 4 layers,
256 wide, 4 heads (our "mini" preset), context 256, 8 sequences per step (2,048 tokens, no
accumulation), fp32, AdamW (lr 3e-4, betas 0.9/0.95, weight decay 0.1 on the matrices only),
gradient norm clipped to 1.0, no dropout; a constant learning rate on both sides.

Data: about 3 MB of varied text, saved with `save_to_disk` and encoded once by
`encode_corpus` into a tokens folder (not timed). Both sides then read that folder's train
shards, and with the same seed draw the very same windows at every step (the peer samples
the way our RandomWindows and nanoGPT's get_batch do: a shard by its length, a random
start, a memmap slice; the first batch is checked to be identical).

Ours: `train(TrainSettings(model="mini", ...))` in a new run folder, reading the
tokens/s it reports per optimizer step. That figure is timed around data
loading + forward + backward + clipping + the optimizer step; the evaluation and the
checkpoints that follow the last step come after its timing, so they are not in it (nor
is `train()`'s setup: building the model, opening the shards).
Peer: `GPT2LMHeadModel(GPT2Config(same shape))`, `torch.optim.AdamW` with the same two
parameter groups, and per step: sample the windows -> x, y; `model(x).logits`;
`F.cross_entropy`; backward; `clip_grad_norm_`; step; `zero_grad(set_to_none=True)`, all
inside one `perf_counter` pair, tokens/s = 2,048 / seconds.

Each round is a fresh model on each side (a new `train()` in a new folder for ours), the
two sides taking turns (which goes first alternates), so drifting load hits both alike.
The first steps of each round are warm-up (allocator, thread pool, first-touch of the
shards' pages) and are left out; the report gives the medians of the per-step figures
and their range.

    python -m benchmarks.bench_train_loop [--rounds 3] [--steps 8] [--warmup 2] [--threads N]

Run from the project root; GPT-2's files are read from tests/data/gpt2. Everything written
(corpus, tokens, run folders, Hugging Face caches) goes to a temporary folder.
"""

from __future__ import annotations

# No Hugging Face import at module level: `datasets` reads HF_HOME and the offline switches
# when it is imported, so the environment is set first (see isolated_environment).
import argparse
import contextlib
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bench_encode import isolate_environment
from benchmarks.bench_tokenizer import GPT2_DIR
from benchmarks.varied_text import varied_documents

TARGET = 1.2  # ours / peer, tokens/s
VOCAB, LAYERS, HEADS, WIDTH = 50257, 4, 4, 256
PRESET = "mini"  # exactly 4 layers x 4 heads x 256 wide, 256 positions
CONTEXT, MICRO_BATCH = 256, 8
BATCH_TOKENS = CONTEXT * MICRO_BATCH  # one pass per step: no accumulation
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 3e-4, (0.9, 0.95), 0.1, 1.0
PEER_SHAPE = dict(
    n_layer=LAYERS,
    n_head=HEADS,
    n_embd=WIDTH,
    n_positions=CONTEXT,
    vocab_size=VOCAB,
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
)
CORPUS_MB = 3.0
MB = 1_000_000
# Above any step count here: no evaluation or checkpoint before the last step.
NEVER = 1_000_000
_HF_VARIABLES = (
    "HF_HOME",
    "HF_DATASETS_CACHE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_DISABLE_PROGRESS_BARS",
)


@contextlib.contextmanager
def isolated_environment(root: Path) -> Iterator[None]:
    """bench_encode's isolation (Hugging Face pointed at `root`, offline) for the length of
    the benchmark, then the variables as they were: under `make bench` this runs in the
    parent process, whose later subprocesses must not inherit a deleted cache folder.
    If `datasets` was already imported, its cache settings stay as they were; nothing
    here uses a cache (from_dict, save_to_disk and load_from_disk only touch the folders
    they are given)."""
    before = {name: os.environ.get(name) for name in _HF_VARIABLES}
    isolate_environment(root)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def make_tokens(root: Path, megabytes: float) -> tuple[Path, int]:
    """A tokens folder encoded with GPT-2's tokenizer from `megabytes` of varied text
    saved as a dataset; returns it and its train token count. Not timed."""
    import datasets

    from tasks.encode.corpus_source import open_corpus
    from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus

    docs = varied_documents(int(megabytes * MB), seed=0)
    corpus = root / "corpus"
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(corpus))
    # 2% held out: a few dozen documents, enough for the one validation batch at the end.
    settings = EncodeSettings(val_fraction=0.02)
    tokens = root / "tokens"
    meta = encode_corpus(
        open_corpus(corpus), tokens, TokenizerChoice(tokenizer=str(GPT2_DIR)), settings
    )
    return tokens, meta.tokens["train"]


# ---------------------------------------------------------------------------------------
# Ours


def ours_round(tokens: Path, run_dir: Path, steps: int, seed: int) -> dict[str, Any]:
    """One fresh `train()` of `steps` optimizer steps: the per-step tokens/s and losses it
    reported. The run folder (final checkpoints) is deleted afterwards."""
    from tasks.train.loop import Callbacks, StepMetrics, train
    from tasks.train.settings import TrainSettings

    settings = TrainSettings(
        tokens=tokens,
        model=PRESET,
        context=CONTEXT,
        micro_batch=MICRO_BATCH,
        batch_tokens=BATCH_TOKENS,
        max_steps=steps,
        warmup_steps=0,
        learning_rate=LR,
        min_learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        beta1=BETAS[0],
        beta2=BETAS[1],
        grad_clip=GRAD_CLIP,
        dropout=0.0,
        eval_interval=NEVER,
        checkpoint_interval=NEVER,
        eval_batches=1,
        seed=seed,
        device="cpu",
        precision="fp32",
        compile=False,
    )
    # No warm-up and a minimum equal to the peak: the schedule is flat, the peer's constant
    # 3e-4. The rate costs nothing either way; it keeps the two losses comparable.
    rates: list[float] = []
    losses: list[float] = []

    def on_step(step: int, metrics: StepMetrics) -> None:
        rates.append(metrics.tokens_per_s)
        losses.append(metrics.loss)

    train(settings, run_dir, Callbacks(on_step=on_step))
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"tokens_per_s": rates, "losses": losses}


# ---------------------------------------------------------------------------------------
# The peer: a minimal loop around transformers' GPT2LMHeadModel


class PeerWindows:
    """Random windows of context + 1 tokens from the train shards, drawn as our
    RandomWindows draws them (a shard with probability proportional to its start
    positions, then a start), so with the same seed both sides read the same tokens."""

    def __init__(self, tokens: Path, seed: int) -> None:
        from tasks.encode.token_shards import open_shards

        self.shards = [s for s in open_shards(tokens, "train") if len(s) > CONTEXT]
        starts = np.array([len(s) - CONTEXT for s in self.shards], dtype=np.float64)
        self.weights = starts / starts.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        which = self.rng.choice(len(self.shards), size=MICRO_BATCH, p=self.weights)
        rows = []
        for index in which:
            shard = self.shards[index]
            start = int(self.rng.integers(0, len(shard) - CONTEXT))
            rows.append(shard[start : start + CONTEXT + 1].astype(np.int64))
        window = torch.from_numpy(np.stack(rows))
        return window[:, :-1].contiguous(), window[:, 1:].contiguous()


def peer_round(tokens: Path, steps: int, seed: int) -> dict[str, Any]:
    """`steps` steps of the usual loop on a fresh model: per-step tokens/s and losses."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**PEER_SHAPE))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=LR,
        betas=BETAS,
    )
    windows = PeerWindows(tokens, seed)
    rates: list[float] = []
    losses: list[float] = []
    for _ in range(steps):
        started = time.perf_counter()
        x, y = windows.batch()
        logits = model(x).logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # the usual loop logs it; ours reads it every step too
        rates.append(BATCH_TOKENS / (time.perf_counter() - started))
    return {"tokens_per_s": rates, "losses": losses}


def same_first_batch(tokens: Path, seed: int) -> bool:
    """Do the peer's sampler and our RandomWindows give the same first batch?"""
    from tasks.encode.loader import RandomWindows

    ours = RandomWindows(tokens, context=CONTEXT, batch_size=MICRO_BATCH, seed=seed).batch()
    peer = PeerWindows(tokens, seed).batch()
    return all(torch.equal(a, b) for a, b in zip(ours, peer, strict=True))


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh runs of each side")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out per round")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for both sides (default: torch's own)",
    )
    parser.add_argument("--mb", type=float, default=CORPUS_MB, help="MB of text to encode")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-train-loop-") as folder:
        root = Path(folder)
        with isolated_environment(root):
            return _benchmark(args, root)


def _benchmark(args: argparse.Namespace, root: Path) -> int:
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # the same for both sides
    try:
        return _run(args, root)
    finally:
        torch.set_num_threads(threads_before)


def _run(args: argparse.Namespace, root: Path) -> int:
    started = time.perf_counter()
    tokens, train_tokens = make_tokens(root, args.mb)
    print(
        f"tokens: {train_tokens:,} train tokens from {args.mb:.0f} MB of varied text, encoded "
        f"with GPT-2's files (made in {time.perf_counter() - started:.0f} s, not timed); "
        f"torch threads: {torch.get_num_threads()} for both, {os.cpu_count()} CPU cores",
        flush=True,
    )

    steps = args.warmup + args.steps
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "peer": []}
    for round_ in range(args.rounds):
        order = ("ours", "peer") if round_ % 2 == 0 else ("peer", "ours")
        for name in order:
            if name == "ours":
                run = ours_round(tokens, root / f"ours-{round_}", steps, seed=round_)
            else:
                run = peer_round(tokens, steps, seed=round_)
            runs[name].append(run)
        medians = {
            name: statistics.median(runs[name][-1]["tokens_per_s"][args.warmup :]) for name in runs
        }
        print(
            f"  round {round_ + 1}/{args.rounds}: ours {medians['ours']:,.0f}, peer "
            f"{medians['peer']:,.0f} tokens/s (medians)",
            flush=True,
        )

    def timed(name: str) -> list[float]:
        return [rate for run in runs[name] for rate in run["tokens_per_s"][args.warmup :]]

    ours, peer = statistics.median(timed("ours")), statistics.median(timed("peer"))
    ratio = ours / peer
    verdict = "meets" if ratio >= TARGET else "MISSES"
    count = args.rounds * args.steps
    print(
        f"\nTraining loop, {LAYERS}x{WIDTH}, {HEADS} heads, ctx {CONTEXT}, batch "
        f"{MICRO_BATCH}, vocab {VOCAB:,}, fp32, AdamW + clip, data from a tokens folder "
        "(tokens/s per step)"
    )
    print(
        f"  median of {count} steps each ({args.rounds} rounds of {args.steps}, after "
        f"{args.warmup} warm-up steps per round), the two sides taking turns"
    )
    for name, label in (("peer", "peer (GPT2LMHeadModel loop)"), ("ours", "ours (gpt2lab train)")):
        values = timed(name)
        print(
            f"  {label:<28}: {statistics.median(values):8.0f} tokens/s  (steps "
            f"{min(values):.0f}-{max(values):.0f}; {BATCH_TOKENS / statistics.median(values):.2f}"
            f" s/step)"
        )
    for name in ("peer", "ours"):
        warm = [f"{rate:.0f}" for run in runs[name] for rate in run["tokens_per_s"][: args.warmup]]
        print(f"  {name} warm-up steps, not counted: {', '.join(warm)} tokens/s")
    print(f"  ratio ours/peer             : {ratio:8.2f}x   (target >= {TARGET}x: {verdict})")
    print(
        "  ours' per-step figures exclude its final evaluation and checkpoints, which come "
        "after the last step's timing"
    )
    print("  (the model alone, one fixed batch, no data or clipping: bench_train_step)")
    for name in ("peer", "ours"):
        first = statistics.median(run["losses"][0] for run in runs[name])
        last = statistics.median(run["losses"][-1] for run in runs[name])
        print(f"  {name} loss, median over rounds: step 1 {first:.3f} -> step {steps} {last:.3f}")

    warnings = []
    if not same_first_batch(tokens, seed=0):
        warnings.append("the peer's sampler and RandomWindows drew different windows")
    for name, name_runs in runs.items():
        for run in name_runs:
            if len(run["tokens_per_s"]) != steps:
                warnings.append(f"{name} reported {len(run['tokens_per_s'])} steps, not {steps}")
            if not all(math.isfinite(loss) for loss in run["losses"]):
                warnings.append(f"{name} gave a loss that is not finite: {run['losses']}")
            elif run["losses"][-1] >= run["losses"][0]:
                warnings.append(f"{name}'s loss did not fall: {run['losses']}")
    for warning in warnings:
        print(f"  WARNING: {warning}")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 1 if warnings else 0


if __name__ == "__main__":
    raise SystemExit(main())
