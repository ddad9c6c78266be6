"""GPU check of evaluation: the same small model, evaluated on CUDA and on the CPU, must
give the same likelihood figures (within 1e-3 relative).

Not part of `make bench` (which runs on the CPU); run it by hand on a CUDA machine:

    python -m benchmarks.gpu_eval_check [--limit 2] [--gpt2-dir tests/data/gpt2] [--keep DIR]

Model: a random tiny gpt2lab GPT (2 layers, 64 wide, 2 heads, 1,024 positions), seeded,
saved with GPT-2's tokenizer (tests/data/gpt2 or --gpt2-dir); without those files, with a
stand-in byte-level BPE (the 256 bytes + <|endoftext|>), which reads any text too.

Evaluations: the evaluate flow itself (`EvaluateConfig(device=...)`, so the model is moved
the way `gpt2lab evaluate --device` moves it), in a temporary workspace, with no output
cache and the tasks' shipped local rows:
- lambada and wikitext2-perplexity, every local row: likelihood tasks, the check;
- cnn-dailymail-tldr, the first --limit rows, top-k 2 sampling: printed, not checked (each
  row samples from a generator of its own on the model's device, and CUDA's generators
  give other streams than the CPU's). On CUDA it is also run with a batch size of 1 and
  of 8: each row's own seed should give the same summary in both.

For every metric: the CUDA and CPU values and their relative difference |a - b| / max(|a|,
|b|), then the largest relative difference of the likelihood metrics and of all metrics.

Exits 0 at once, with one line, where no CUDA GPU is present; 1 if a run fails or a
likelihood metric differs by more than 1e-3 relative; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks.bench_tokenizer import GPT2_DIR

LIKELIHOOD_TASKS = ["lambada", "wikitext2-perplexity"]
SAMPLED_TASK = "cnn-dailymail-tldr"
TOLERANCE = 1e-3  # relative, on likelihood metrics
TOKENIZER_FILES = ("encoder.json", "vocab.bpe")


def build_model(folder: Path, gpt2_dir: Path, seed: int = 0) -> tuple[Path, str]:
    """A random tiny GPT saved with a tokenizer beside it; returns it and which tokenizer."""
    from model import GPT, GPTConfig, load_tokenizer, save_checkpoint
    from model.tokenizer.train import MIN_VOCAB_SIZE, train_bpe

    if all((gpt2_dir / name).is_file() for name in TOKENIZER_FILES):
        tokenizer, which = load_tokenizer(gpt2_dir), f"GPT-2's, from {gpt2_dir}"
    else:
        tokenizer = train_bpe(["bytes only"], MIN_VOCAB_SIZE, folder.parent / "stand-in-bpe")
        which = f"a stand-in byte-level BPE ({gpt2_dir} has no {' / '.join(TOKENIZER_FILES)})"
    torch.manual_seed(seed)
    config = GPTConfig.preset("tiny", vocab_size=tokenizer.n_vocab, block_size=1024)
    return save_checkpoint(GPT(config), folder, tokenizer=tokenizer), which


def evaluate(model: Path, tasks: list[str], device: str, limit: int | None, batch_size: int = 8):
    """The evaluate flow on `device`; its results by task (scores, examples)."""
    from pipelines.evaluate import EvaluateConfig, run_evaluate

    config = EvaluateConfig(
        model=str(model),
        tasks=tasks,
        limit=limit,
        batch_size=batch_size,
        use_cache=False,
        device=device,
    )
    started = time.perf_counter()
    result = run_evaluate(config)
    saved = json.loads(result.results_file.read_text())
    assert saved["device"] == device, f"asked for {device}, the flow used {saved['device']}"
    print(f"  {device}: {', '.join(tasks)} in {time.perf_counter() - started:.1f} s", flush=True)
    return {r["task"]: r for r in saved["results"]}


def relative_difference(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def compare(cuda: dict, cpu: dict, checked: set[str]) -> tuple[float, float]:
    """Print every metric on both devices; the largest relative difference among the
    `checked` tasks' metrics and among all."""
    print(f"\n  {'task':<22} {'metric':<18} {'cuda':>14} {'cpu':>14} {'rel. diff':>10}")
    worst_checked = worst_all = 0.0
    for task, result in cpu.items():
        for metric, value in result["scores"].items():
            other = cuda[task]["scores"][metric]
            diff = relative_difference(other, value)
            worst_all = max(worst_all, diff)
            if task in checked:
                worst_checked = max(worst_checked, diff)
            mark = "" if task in checked else "  (sampled: not checked)"
            print(f"  {task:<22} {metric:<18} {other:>14.6g} {value:>14.6g} {diff:>10.2e}{mark}")
    return worst_checked, worst_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2, help="rows of the TL;DR task")
    parser.add_argument(
        "--gpt2-dir", type=Path, default=GPT2_DIR, help="folder with GPT-2's tokenizer files"
    )
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print(
            "gpu_eval_check: no CUDA GPU here (torch.cuda.is_available() is False); "
            "nothing to compare, run it on a CUDA machine"
        )
        return 0
    if args.keep:
        args.keep.mkdir(parents=True)
        return _check(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="gpu-eval-check-") as folder:
        return _check(args, Path(folder))


def _check(args: argparse.Namespace, root: Path) -> int:
    started = time.perf_counter()
    # Everything the flow writes (MLflow, Prefect, results) stays in `root`; nothing is
    # fetched: the tasks read their shipped local rows.
    os.environ["GPT2LAB_HOME"] = str(root / "workspace")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the workspace's own store, not the shell's
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from pipelines.workspace import configure_environment

    configure_environment()
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    model, which = build_model(root / "model", args.gpt2_dir)
    print(f"model: random tiny GPT in {model}, tokenizer: {which}", flush=True)

    problems: list[str] = []
    try:
        cuda = evaluate(model, LIKELIHOOD_TASKS, "cuda", None)
        cpu = evaluate(model, LIKELIHOOD_TASKS, "cpu", None)
        cuda |= evaluate(model, [SAMPLED_TASK], "cuda", args.limit)
        cpu |= evaluate(model, [SAMPLED_TASK], "cpu", args.limit)
        one_by_one = evaluate(model, [SAMPLED_TASK], "cuda", args.limit, batch_size=1)
    except Exception as error:
        traceback.print_exc()
        print(f"  PROBLEM: an evaluation failed: {type(error).__name__}: {error}")
        return 1

    worst_checked, worst_all = compare(cuda, cpu, set(LIKELIHOOD_TASKS))
    print(
        f"\n  largest relative difference: likelihood metrics {worst_checked:.2e} "
        f"(limit {TOLERANCE:g}), all metrics {worst_all:.2e}"
    )
    if worst_checked > TOLERANCE:
        problems.append(f"likelihood metrics differ by {worst_checked:.2e} relative > {TOLERANCE}")

    batched = [e["raw_output"] for e in cuda[SAMPLED_TASK]["examples"]]
    alone = [e["raw_output"] for e in one_by_one[SAMPLED_TASK]["examples"]]
    same = sum(a == b for a, b in zip(batched, alone, strict=True))
    print(f"  {SAMPLED_TASK} on cuda, batch 8 vs batch 1: {same}/{len(alone)} rows identical")

    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print(f"\nwhole check: {time.perf_counter() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
