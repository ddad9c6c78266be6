"""Encode flow: MB/s of text from a dataset on disk to token shards, against nanoGPT's way
of doing it (target >= 3x) and against tiktoken's own batch encoder over the same texts
already in memory (the BPE ceiling, target >= 0.9x); and peak memory as the corpus grows
(4x the text -> target < 1.5x peak RSS).

Ours is the whole job a user asks for: `open_corpus` (which checks the dataset and takes
the SHA-256 of its files) and `encode_corpus` (plan, tokenizer, every document encoded on
2 threads and followed by <|endoftext|>, train/val shards, metadata) into a new folder.

The baseline is written the way nanoGPT's `data/openwebtext/prepare.py` works, on the same
dataset in the same run: `load_from_disk`, `train_test_split(seed=2357)`, `.map(process,
num_proc=2)` with `encode_ordinary` + end-of-text per document, then one uint16 `np.memmap`
per split filled from `dset.shard(..., contiguous=True).with_format("numpy")`. nanoGPT cuts
the write into 1024 batches for 9B tokens; a 50 MB corpus gets 64 (never more than the
split has documents). The map's cache is off (`load_from_cache_file=False`) and its files
go to a folder deleted after each run, so no repeat reuses an earlier one's work. Its
tokenizer is a raw tiktoken Encoding from GPT-2's files (see bench_tokenizer), as is the
ceiling's. The baseline holds out the same share for validation as ours (0.5%, against
nanoGPT's 0.05% of 8M documents), drops nanoGPT's tqdm bars, and reads each column whole
(`dset["len"][:]`), as `dset["len"]` did in the datasets release nanoGPT was written for.

The ceiling is `encode_ordinary_batch(texts, num_threads=2)` over a Python list of the
corpus's texts: BPE alone, with no reading, splitting or writing. Ours can only come near
it if reading and writing cost little next to BPE. Ours, the baseline and the ceiling take
turns, so drifting load hits all alike; the report gives medians and the range of the runs.

Peak memory: ours runs once per size in a fresh interpreter, on N and on 4N MB of text
(4N made of 4 differently seeded pieces, not one text repeated).

    python -m benchmarks.bench_encode [--mb 50] [--repeats 3] [--no-memory]

Run from the project root; GPT-2's files are read from tests/data/gpt2. Everything written
(corpora, tokens, Hugging Face caches) goes to a temporary folder.
"""

from __future__ import annotations

# No Hugging Face import at module level: `datasets` reads HF_HOME and the offline
# switches when it is imported, so the environment is set first (see isolate_environment).
import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_tokenizer import GPT2_DIR, peer_encoding
from benchmarks.memory import peak_rss_kb, run_child
from benchmarks.varied_text import varied_documents

SPEED_TARGET = 3.0  # ours / baseline
CEILING_TARGET = 0.9  # ours / tiktoken's encode_ordinary_batch
MEMORY_TARGET = 1.5  # peak RSS at 4N / at N
THREADS = 2
DOC_BYTES = 4096  # a web page's worth of text
BASELINE_BATCHES = 64  # nanoGPT's write batches (1024 there, for 9B tokens)
BASELINE_SEED = 2357  # nanoGPT's train_test_split seed
MB = 1_000_000
_RESULT = "BENCH-ENCODE-RESULT "  # marks the one machine-readable line a child prints


def isolate_environment(root: Path) -> None:
    """Point Hugging Face at `root` and keep it offline, before `datasets` is imported:
    nothing the benchmark does may land in (or be read from) the user's caches."""
    os.environ["HF_HOME"] = str(root / "hf")
    os.environ["HF_DATASETS_CACHE"] = str(root / "hf" / "datasets")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # map's bars would bury the report; the baseline loses nothing measurable by it.
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"


# ---------------------------------------------------------------------------------------
# The corpora


def make_corpora(root: Path, megabytes: float, pieces: int) -> list[Path]:
    """Save `pieces` datasets of about `megabytes` of varied text each (piece k from seed
    k), and return the folders of the corpora made of the first 1 and of all of them.

    One piece is generated at a time and saved before the next, so this process never
    holds more than one piece's text; the 4-piece corpus is then written from the pieces
    on disk. Not timed."""
    import datasets

    folders = []
    for seed in range(pieces):
        docs = varied_documents(int(megabytes * MB), seed=seed, doc_bytes=DOC_BYTES)
        folder = root / f"piece-{seed}"
        datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(folder))
        folders.append(folder)
        del docs
    corpora = [folders[0]]
    if pieces > 1:
        whole = root / f"corpus-{pieces}x"
        parts = [datasets.load_from_disk(str(folder)) for folder in folders]
        datasets.concatenate_datasets(parts).save_to_disk(str(whole))
        del parts
        for folder in folders[1:]:
            shutil.rmtree(folder)
        corpora.append(whole)
    return corpora


def corpus_texts(folder: Path) -> list[str]:
    import datasets

    return datasets.load_from_disk(str(folder))[:]["text"]


# ---------------------------------------------------------------------------------------
# Ours


def ours_run(corpus: Path, out: Path) -> dict[str, Any]:
    """open_corpus + encode_corpus into the new folder `out` (deleted afterwards): seconds,
    where they went, CPU seconds, and what was written."""
    from tasks.encode.corpus_source import open_corpus
    from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus

    cpu_before = cpu_seconds()
    start = time.perf_counter()
    source = open_corpus(corpus)
    opened = time.perf_counter()
    meta = encode_corpus(
        source, out, TokenizerChoice(tokenizer=str(GPT2_DIR)), EncodeSettings(threads=THREADS)
    )
    end = time.perf_counter()
    cpu = cpu_seconds() - cpu_before
    # Each part's record holds the seconds it took (reading, encoding, writing its
    # shards); the rest of encode_corpus is the plan's scan, the tokenizer, tokens.json.
    parts_s = sum(json.loads(p.read_text()).get("seconds", 0.0) for p in out.glob("parts/*.json"))
    shutil.rmtree(out)
    return {
        "seconds": end - start,
        "open_s": opened - start,
        "parts_s": parts_s,
        "cpu_s": cpu,
        "tokens": sum(meta.tokens.values()),
        "text_bytes": sum(meta.text_bytes.values()),
        "documents": sum(meta.documents.values()),
    }


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the baseline's map
    workers are joined before map returns, so they are counted)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# ---------------------------------------------------------------------------------------
# The baseline: nanoGPT's data/openwebtext/prepare.py, on a dataset on disk

# nanoGPT's `process` reads a module-level `enc`; set by `register_baseline_encoding`.
enc: Any = None


def register_baseline_encoding() -> None:
    """Make the raw tiktoken encoding the `enc` of `process`, and register it in tiktoken's
    registry by its name. nanoGPT's `tiktoken.get_encoding("gpt2")` is a registered encoding,
    which pickles as its name: sending `process` (and the `enc` it refers to) to the map's
    workers then costs nothing. An unregistered one would pickle its 50,000 merges and be
    rebuilt in each worker, a cost nanoGPT does not pay."""
    import tiktoken.registry

    global enc
    enc = peer_encoding(GPT2_DIR)
    tiktoken.registry.ENCODINGS[enc.name] = enc


def process(example: dict[str, str]) -> dict[str, Any]:
    """nanoGPT's, as it is written there."""
    ids = enc.encode_ordinary(example["text"])  # encode_ordinary ignores any special tokens
    ids.append(enc.eot_token)  # add the end of text token, e.g. 50256 for gpt2 bpe
    out = {"ids": ids, "len": len(ids)}
    return out


def baseline_run(corpus: Path, work: Path, val_fraction: float) -> dict[str, Any]:
    """nanoGPT's prepare.py on the dataset at `corpus`, writing into `work` (deleted
    afterwards): seconds of each step, CPU seconds, tokens written."""
    import datasets
    import numpy as np

    work.mkdir()
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    dataset = datasets.load_from_disk(str(corpus))
    # Cache files named explicitly, inside `work`: by default they would go next to the
    # dataset's own files, where open_corpus would fingerprint them in ours' next run.
    split_dataset = dataset.train_test_split(
        test_size=val_fraction,
        seed=BASELINE_SEED,
        shuffle=True,
        train_indices_cache_file_name=str(work / "train-indices.arrow"),
        test_indices_cache_file_name=str(work / "test-indices.arrow"),
    )
    split_dataset["val"] = split_dataset.pop("test")  # rename the test split to val
    split = time.perf_counter()
    tokenized = split_dataset.map(
        process,
        remove_columns=["text"],
        desc="tokenizing the splits",
        num_proc=THREADS,
        load_from_cache_file=False,
        cache_file_names={name: str(work / f"{name}-tokenized.arrow") for name in split_dataset},
    )
    mapped = time.perf_counter()
    tokens = 0
    for name, dset in tokenized.items():
        # `[:]` after each column: nanoGPT was written for datasets 2, where dset["len"] was
        # the whole column; since datasets 4 it is a lazy Column, which numpy reads one row
        # at a time (the write loop took 1.5 s instead of 0.15 s for 20 MB of text). The
        # `[:]` reads the column at once, as nanoGPT's code did: the baseline must not pay
        # for a change in the library's API.
        arr_len = np.sum(dset["len"][:], dtype=np.uint64)
        filename = work / f"{name}.bin"
        dtype = np.uint16  # (can do since enc.max_token_value == 50256 is < 2**16)
        arr = np.memmap(filename, dtype=dtype, mode="w+", shape=(arr_len,))
        # nanoGPT's constant, capped: a shard of nothing would make np.concatenate fail on
        # a validation split of fewer documents than batches.
        total_batches = min(BASELINE_BATCHES, len(dset))
        idx = 0
        for batch_idx in range(total_batches):
            # Batch together samples for faster write
            batch = dset.shard(
                num_shards=total_batches, index=batch_idx, contiguous=True
            ).with_format("numpy")
            arr_batch = np.concatenate(batch["ids"][:])
            # Write into mmap
            arr[idx : idx + len(arr_batch)] = arr_batch
            idx += len(arr_batch)
        arr.flush()
        tokens += int(arr_len)
        if idx != arr_len:
            raise RuntimeError(f"baseline wrote {idx} of {arr_len} tokens of {name}")
    end = time.perf_counter()
    cpu = cpu_seconds() - cpu_before
    shutil.rmtree(work)  # Linux: files still mapped by this process can go
    return {
        "seconds": end - start,
        "split_s": split - start,
        "map_s": mapped - split,
        "write_s": end - mapped,
        "cpu_s": cpu,
        "tokens": tokens,
    }


# ---------------------------------------------------------------------------------------
# The ceiling: tiktoken alone over texts in memory


def ceiling_run(texts: list[str]) -> dict[str, Any]:
    """tiktoken's own batch encoder, on a thread pool of its own. Its threads do not always
    run in parallel (one CPU s per second in some runs on this machine, two in others);
    the CPU seconds in the report show which it was."""
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    encoded = enc.encode_ordinary_batch(texts, num_threads=THREADS)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    # Plus one end-of-text per document, as ours and the baseline write.
    tokens = sum(len(ids) for ids in encoded) + len(encoded)
    return {"seconds": seconds, "cpu_s": cpu, "tokens": tokens}


# ---------------------------------------------------------------------------------------
# Memory: one run of ours per fresh process


def memory_child(corpus: Path, out: Path) -> int:
    """`--memory-child CORPUS OUT`: run ours once in this fresh process, print its peak
    RSS and what it wrote."""
    run = ours_run(corpus, out)
    kept = ("seconds", "tokens", "text_bytes", "documents")
    report = {"peak_kb": peak_rss_kb(), **{key: run[key] for key in kept}}
    print(_RESULT + json.dumps(report), flush=True)
    return 0


def measure_memory(corpus: Path, work: Path) -> dict[str, Any]:
    out = work / f"memory-{corpus.name}"
    report = run_child(
        "benchmarks.bench_encode",
        ["--memory-child", str(corpus), str(out)],
        _RESULT,
        f"memory run on {corpus}",
    )
    shutil.rmtree(out, ignore_errors=True)
    return report


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="N MB of text (memory: N and 4N)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory part")
    parser.add_argument("--memory-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        # The parent already set the environment up; this process inherits it.
        return memory_child(*args.memory_child)

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as folder:
        root = Path(folder)
        isolate_environment(root)
        return _benchmark(args, root)


def _benchmark(args: argparse.Namespace, root: Path) -> int:
    from tasks.encode.encode import EncodeSettings

    started = time.perf_counter()
    corpora = make_corpora(root / "corpora", args.mb, 1 if args.no_memory else 4)
    texts = corpus_texts(corpora[0])
    corpus_bytes = sum(len(text.encode("utf-8")) for text in texts)
    megabytes = corpus_bytes / MB
    print(
        f"corpus: {megabytes:.2f} MB of varied text in {len(texts):,} documents of about "
        f"{DOC_BYTES / 1000:.0f} KB, saved with save_to_disk (made in "
        f"{time.perf_counter() - started:.0f} s, not timed); {THREADS} threads or processes "
        f"for each, {os.cpu_count()} CPU cores",
        flush=True,
    )

    # Memory first, while the machine is otherwise quiet; each size in a fresh process.
    memory = {}
    if not args.no_memory:
        memory = {corpus: measure_memory(corpus, root) for corpus in corpora}

    register_baseline_encoding()
    val_fraction = EncodeSettings().val_fraction
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": [], "ceiling": []}
    for repeat in range(args.repeats):
        runs["ours"].append(ours_run(corpora[0], root / f"ours-{repeat}"))
        runs["baseline"].append(baseline_run(corpora[0], root / f"base-{repeat}", val_fraction))
        runs["ceiling"].append(ceiling_run(texts))

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    def mb_s(name: str) -> str:
        speeds = [megabytes / run["seconds"] for run in runs[name]]
        tokens = runs[name][-1]["tokens"]
        return (
            f"{megabytes / median(name, 'seconds'):6.2f} MB/s  (runs {min(speeds):.2f}-"
            f"{max(speeds):.2f}; {median(name, 'seconds'):.1f} s, {tokens:,} tokens, "
            f"{median(name, 'cpu_s'):.1f} CPU s)"
        )

    ours = megabytes / median("ours", "seconds")
    to_baseline = ours / (megabytes / median("baseline", "seconds"))
    to_ceiling = ours / (megabytes / median("ceiling", "seconds"))
    print(
        f"\nencode {megabytes:.1f} MB of text to token shards: median of {args.repeats} runs, "
        "ours / baseline / ceiling taking turns"
    )
    print(f"  baseline (nanoGPT prepare.py way)     : {mb_s('baseline')}")
    print(f"  ceiling (tiktoken batch, in memory)   : {mb_s('ceiling')}")
    print(f"  ours (open_corpus + encode_corpus)    : {mb_s('ours')}")
    print(
        f"  ratio ours/baseline: {to_baseline:.2f}x   (target >= {SPEED_TARGET}x: "
        f"{'meets' if to_baseline >= SPEED_TARGET else 'MISSES'})"
    )
    print(
        f"  ratio ours/ceiling : {to_ceiling:.2f}x   (target >= {CEILING_TARGET}x: "
        f"{'meets' if to_ceiling >= CEILING_TARGET else 'MISSES'})"
    )
    # Where the time goes (medians, seconds).
    rest = median("ours", "seconds") - median("ours", "open_s") - median("ours", "parts_s")
    print(
        f"  ours, s    : open_corpus (checks, SHA-256 of the files) "
        f"{median('ours', 'open_s'):.2f}, parts (read, encode, write) "
        f"{median('ours', 'parts_s'):.2f}, rest (plan's scan, tokenizer, metadata) "
        f"{rest:.2f}"
    )
    print(
        f"  baseline, s: load + train_test_split {median('baseline', 'split_s'):.2f}, "
        f"map (encode, num_proc={THREADS}) {median('baseline', 'map_s'):.2f}, "
        f"memmap write ({BASELINE_BATCHES} batches) {median('baseline', 'write_s'):.2f}"
    )

    warnings = []
    expected = runs["baseline"][-1]["tokens"]
    for name, name_runs in runs.items():
        for run in name_runs:
            if run["tokens"] != expected:
                warnings.append(
                    f"{name} gave {run['tokens']:,} tokens, the baseline "
                    f"{expected:,}: they did not do the same work"
                )
    for run in runs["ours"]:
        if run["text_bytes"] != corpus_bytes or run["documents"] != len(texts):
            warnings.append(
                f"ours encoded {run['documents']:,} documents, "
                f"{run['text_bytes']:,} bytes; the corpus holds {len(texts):,}, "
                f"{corpus_bytes:,}"
            )

    if memory:
        print("\npeak RSS (VmHWM), ours in a fresh process per size:")
        for figures in memory.values():
            size = figures["text_bytes"] / MB
            print(
                f"  {size:6.1f} MB of text: {figures['peak_kb'] / 1024:6.0f} MiB  "
                f"({figures['seconds']:.1f} s, {size / figures['seconds']:.2f} MB/s, "
                f"{figures['tokens']:,} tokens)"
            )
        small, large = (memory[corpus] for corpus in corpora)
        ratio = large["peak_kb"] / small["peak_kb"]
        verdict = "meets" if ratio < MEMORY_TARGET else "MISSES"
        print(f"  ratio 4N/N: {ratio:.2f}x   (target < {MEMORY_TARGET}x: {verdict})")
        if small["tokens"] != expected:
            warnings.append(f"memory run on N gave {small['tokens']:,} tokens, not {expected:,}")
        if not 3.5 < large["text_bytes"] / small["text_bytes"] < 4.5:
            warnings.append(f"the 4N corpus holds {large['text_bytes']:,} bytes of text")

    for warning in warnings:
        print(f"  WARNING: {warning}")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
