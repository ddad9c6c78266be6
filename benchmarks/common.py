"""Shared helpers for benchmarks: same weights in both implementations, fair timing."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import torch

from model import load_model


def paired_medians(
    ours: Callable[[], object], peer: Callable[[], object], *, warmup: int, repeats: int
) -> tuple[float, float]:
    """Median seconds of `ours` and `peer`, run alternately so that drift in the machine's
    speed (other load, thermal state) hits both equally."""
    for _ in range(warmup):
        ours()
        peer()
    ours_times, peer_times = [], []
    for _ in range(repeats):
        for fn, times in ((ours, ours_times), (peer, peer_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(peer_times)


def twin_models(hf_config_kwargs: dict, seed: int = 0):
    """A random transformers GPT2LMHeadModel and our GPT holding the very same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    peer = GPT2LMHeadModel(GPT2Config(**hf_config_kwargs))
    with tempfile.TemporaryDirectory() as folder:
        peer.save_pretrained(folder)
        ours = load_model(folder)
    return ours, peer


def report(title: str, unit: str, peer_name: str, peer: float, ours: float, target: float):
    ratio = ours / peer
    verdict = "meets" if ratio >= target else "MISSES"
    print(f"\n{title}")
    print(f"  peer ({peer_name}): {peer:10.1f} {unit}")
    print(f"  ours (gpt2lab)   : {ours:10.1f} {unit}")
    print(f"  ratio ours/peer  : {ratio:10.2f}x   (target >= {target}x: {verdict})")
    return ratio


def alternating_medians(
    runs: Sequence[Callable[[], object]], *, warmup: int, repeats: int
) -> list[float]:
    """Median seconds of each of `runs`, taking turns as `paired_medians` does, for
    benchmarks that compare more than two ways of doing the same work."""
    for _ in range(warmup):
        for fn in runs:
            fn()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for fn, seconds in zip(runs, times, strict=True):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]
