"""How fast does gpt2lab encode GPT-2 tokens, next to the tiktoken it wraps?

The peer is a raw `tiktoken.Encoding` built from the same files with tiktoken's own
loader and its own GPT-2 split pattern (what `tiktoken.get_encoding("gpt2")` gives when
online). Our `Tokenizer` wraps tiktoken, so the goal is to lose nothing (>= 0.95x).
Hugging Face `tokenizers` is timed too, for context.

    python -m benchmarks.bench_tokenizer [--mb 4] [--repeats 7]

Run from the project root; GPT-2's files are read from tests/data/gpt2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import tiktoken

from benchmarks.varied_text import varied_documents
from model.tokenizer import load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
GPT2_DIR = REPO_ROOT / "tests" / "data" / "gpt2"  # GPT-2's released files (README there)
TARGET_RATIO = 0.95


def peer_encoding(folder: Path) -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, built with tiktoken's own loader from local files."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str  # tiktoken's GPT-2 split pattern

    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # "" = no cache: read the files themselves
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(folder / "vocab.bpe"),
            encoder_json_file=str(folder / "encoder.json"),
        )
    finally:
        if cache_dir is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    return tiktoken.Encoding(
        name="gpt2-peer",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


def median_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run; the runs take turns so drifting load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="megabytes of text to encode")
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement")
    parser.add_argument("--vocab-dir", type=Path, default=GPT2_DIR)
    args = parser.parse_args(argv)

    docs = varied_documents(int(args.mb * 1_000_000), seed=0)
    megabytes = sum(len(doc.encode("utf-8")) for doc in docs) / 1_000_000
    cores = os.cpu_count() or 1

    peer = peer_encoding(args.vocab_dir)
    ours = load_tokenizer(args.vocab_dir)
    same = ours.encode_batch(docs) == peer.encode_ordinary_batch(docs, num_threads=cores)

    one_thread = median_seconds(
        {
            "peer": lambda: [peer.encode_ordinary(doc) for doc in docs],
            "ours": lambda: [ours.encode(doc) for doc in docs],
        },
        args.repeats,
    )
    all_cores = median_seconds(
        {
            "peer": lambda: peer.encode_ordinary_batch(docs, num_threads=cores),
            "ours": lambda: ours.encode_batch(docs),
        },
        args.repeats,
    )
    hf = _hf_seconds(args.vocab_dir, docs, max(1, args.repeats // 2))

    rows = [
        ("tiktoken encode_ordinary (peer)", 1, one_thread["peer"], one_thread["peer"]),
        ("gpt2lab Tokenizer.encode", 1, one_thread["ours"], one_thread["peer"]),
        ("HF tokenizers ByteLevelBPE", 1, hf["1"], one_thread["peer"]),
        ("tiktoken encode_ordinary_batch (peer)", cores, all_cores["peer"], all_cores["peer"]),
        ("gpt2lab Tokenizer.encode_batch", cores, all_cores["ours"], all_cores["peer"]),
        ("HF tokenizers ByteLevelBPE", cores, hf["all"], all_cores["peer"]),
    ]
    print(
        f"GPT-2 BPE encoding: {megabytes:.2f} MB of varied text in {len(docs)} documents, "
        f"median of {args.repeats} runs ({max(1, args.repeats // 2)} for HF), {cores} CPU cores"
    )
    print(f"{'implementation':<40}{'threads':>8}{'MB/s':>9}{'vs peer':>9}")
    for name, threads, seconds, peer_seconds in rows:
        ratio = peer_seconds / seconds
        print(f"{name:<40}{threads:>8}{megabytes / seconds:>9.2f}{ratio:>8.2f}x")
    ratio = one_thread["peer"] / one_thread["ours"]
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ours/peer on one thread: {ratio:.3f}x ({verdict} the >= {TARGET_RATIO}x target)")
    print(f"identical ids, ours vs peer: {same}")
    return 0 if same else 1


def _hf_seconds(folder: Path, docs: list[str], repeats: int) -> dict[str, float]:
    """HF tokenizers on one thread and on all cores (its Rust thread pool)."""
    # Read when encode_batch runs, so it must be set before each call.
    from tokenizers import ByteLevelBPETokenizer

    hf = ByteLevelBPETokenizer.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe"))
    before = os.environ.get("TOKENIZERS_PARALLELISM")

    def run(parallel: bool) -> Callable[[], object]:
        def encode() -> object:
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
            return hf.encode_batch(docs)

        return encode

    try:
        return median_seconds({"1": run(False), "all": run(True)}, repeats)
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


if __name__ == "__main__":
    raise SystemExit(main())
