"""Corpus flow on realistic pages with 1 and 2 Dask workers, against the trafilatura-only
ceiling on as many processes (target: >= 0.8x with 2 workers, fetching never the
bottleneck); peak memory per Dask worker as shards grow 4x (target < 1.5x); bytes on disk
per document.

The web (benchmarks/realistic_web.py, in its own process, one thread per connection):
pages of about 25 KB (an article inside a news site's boilerplate), each answered after a
seeded random 100-300 ms, on HOSTS loopback hosts (127.0.0.2, 127.0.0.3, ...). The links
are dealt out so that every shard gets as many pages (the flow cuts shards by a hash of the
host; over millions of hosts that evens out, over 100 it would not, and an uneven split
would measure the hash's luck rather than the workers).

Politeness: a crawl's defaults (1 s between requests to a host, 2 at once) work because a
real crawl spreads over millions of hosts. Here a thousand pages sit on HOSTS hosts, and
trafilatura takes only about 4 ms on these pages, so the benchmark allows
PER_HOST_CONNECTIONS requests at once per host, PER_HOST_DELAY_S apart, and MAX_CONNECTIONS
in flight per worker: politeness alone would allow HOSTS / PER_HOST_DELAY_S = 2,000 pages/s,
far above the extraction ceiling. What fetching then reaches (latency-bound: a batch ends
with its slowest page) is the report's "fetching alone" column.

Ceiling (the peer): `trafilatura.extract` with our extractor's options over the same pages'
HTML (downloaded beforehand), in a pool of as many processes as the flow has workers. Ours:
the whole corpus flow (`runner="dask"`, `dask_workers=N`, one extraction process per Dask
worker, so that N workers extract on N processes like the ceiling), on N and 4N pages,
timed from its first link read (its store appears) to its dataset written, and from the
first request the web served (the Dask workers started and imported) to the dataset.
A second reference splits the gap: the flow's own per-page work (decode, extract with the
title, filters: `_extract_page`) on the same pool, without fetching, storing or
orchestration. Ceiling and flow take turns; medians of the repeats. CPU seconds and peak
RSS come from /proc, sampled every 0.2 s over this process's tree (Dask workers, their
extraction processes, Prefect's server, the web).

Only 127.0.0.0/8 is fetched (the fetch allowlist names loopback only), and everything the
flow writes goes to a temporary folder. To be sure no packet leaves the machine:

    unshare -n sh -c 'ip link set lo up &&
        exec .venv/bin/python -m benchmarks.bench_corpus_realistic'

    python -m benchmarks.bench_corpus_realistic [--pages 300] [--repeats 2]
"""

from __future__ import annotations

# Only the standard library at module level: the ceiling's pool starts with "spawn", which
# imports this module again in every process, and Prefect must not be imported before the
# environment points it at the temporary folder.
import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.bench_corpus import (
    check_counts,
    isolate_environment,
    stop_child,
    write_url_list,
)
from benchmarks.realistic_web import RESULT_LINE

TARGET_RATIO = 0.8  # with 2 workers
MEMORY_TARGET = 1.5
WORKERS = (1, 2)
HOSTS = 100
SHARDS = 4  # fixed, so 1 and 2 workers do the same work; 4N pages make each shard 4x larger
BATCH_SIZE = 128
PER_HOST_DELAY_S = 0.05
PER_HOST_CONNECTIONS = 4
MAX_CONNECTIONS = 128


# ---------------------------------------------------------------------------------------
# The web, in its own process


class WebProcess:
    """benchmarks/realistic_web.py serving `pages` pages on HOSTS hosts."""

    def __init__(self, pages: int, seed: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.realistic_web", str(pages), str(HOSTS), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        info = self._read()
        self.origins: list[str] = info["origins"]
        self.paths: list[str] = info["paths"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line.startswith(RESULT_LINE):
            self.stop()
            raise RuntimeError(f"the realistic web did not answer: {line!r}")
        return json.loads(line.removeprefix(RESULT_LINE))

    def window(self) -> dict:
        """Requests served since the last call, with the times of the first and last."""
        self.process.stdin.write("window\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        stop_child(self.process)


def balanced_urls(origins: list[str], paths: list[str], shards: int) -> list[str]:
    """One URL per path, page i going to shard i % (shards with hosts), and to that shard's
    hosts in turn, so that every shard and every host of a shard gets as many pages."""
    from tasks.corpus.shards import shard_of

    hosts_of: dict[int, list[str]] = {}
    for origin in origins:
        hosts_of.setdefault(shard_of(origin + "/", shards), []).append(origin)
    groups = [hosts_of[shard] for shard in sorted(hosts_of)]
    urls = []
    for i, path in enumerate(paths):
        hosts = groups[i % len(groups)]
        urls.append(hosts[(i // len(groups)) % len(hosts)] + path)
    return urls


def download(urls: list[str]) -> list[tuple[str, str]]:
    """(url, html) for every URL, 32 at a time (not timed: the ceiling starts from HTML)."""
    import httpx

    with httpx.Client(trust_env=False, timeout=30) as client:

        def get(url: str) -> tuple[str, str]:
            response = client.get(url)
            response.raise_for_status()
            return url, response.text

        with ThreadPoolExecutor(32) as pool:
            return list(pool.map(get, urls))


# ---------------------------------------------------------------------------------------
# Processes: CPU seconds and peak memory of every process under this one


def process_tree(root: int) -> dict[int, dict]:
    """Every live descendant of `root` (Linux /proc): parent, command line, peak RSS (VmHWM,
    KB) and CPU seconds used so far."""
    tick, found, parents = os.sysconf("SC_CLK_TCK"), {}, {}
    for folder in Path("/proc").glob("[0-9]*"):
        try:
            status = (folder / "status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            # utime and stime: fields 14 and 15, counted after the ")" that ends the name.
            times = (folder / "stat").read_text().rsplit(")", 1)[1].split()[11:13]
            command = (
                (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue  # it exited meanwhile
        pid, parent = int(folder.name), int(fields["PPid"])
        parents[pid] = parent
        if "VmHWM" in fields:
            found[pid] = {
                "parent": parent,
                "command": command,
                "peak_kb": int(fields["VmHWM"].split()[0]),
                "cpu_s": sum(int(t) for t in times) / tick,
            }

    def under_root(pid: int) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == root:
                return True
        return False

    return {pid: info for pid, info in found.items() if under_root(pid)}


def kind_of(pid: int, info: dict, tree: dict[int, dict], root: int) -> str:
    """What a process is: the web, Prefect's API server, a Dask worker (a spawned child of
    this process: Dask's nannies live here), an extraction process (a Dask worker's child)."""
    command = info["command"]
    if "benchmarks.realistic_web" in command:
        return "web"
    if "prefect.server.api.server" in command or "prefect server start" in command:
        return "prefect"  # Prefect's temporary server, or the local one prefect_api starts
    if info["parent"] == root and "spawn_main" in command:
        return "dask worker"
    parent = tree.get(info["parent"])
    if parent and parent["parent"] == root and "spawn_main" in parent["command"]:
        return "extraction"
    return "other"


class Sampler:
    """Samples this process's tree every `every` seconds while a flow runs: each process's
    last CPU seconds and peak RSS (processes that exit keep their last sample, at most
    `every` short), and when the run's store first appears (its first link is being read).
    A scan of /proc costs a few ms of this process's CPU; that is counted and left out of
    the flow process's figure."""

    def __init__(self, watch: Path, every: float = 0.2) -> None:
        self.watch, self.every, self.root = watch, every, os.getpid()
        self.seen: dict[int, dict] = {}
        self.store_seen: float | None = None
        self.own_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.is_set():
            tree = process_tree(self.root)
            for pid, info in tree.items():
                self.seen[pid] = {**info, "kind": kind_of(pid, info, tree, self.root)}
            if self.store_seen is None and (self.watch / "state.sqlite").exists():
                self.store_seen = time.time()
            self.own_cpu = time.thread_time() - started
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self.before = {pid: info["cpu_s"] for pid, info in process_tree(self.root).items()}
        self.self_before = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.self_cpu = time.process_time() - self.self_before

    def cpu_by_kind(self) -> dict[str, float]:
        # This process: the flow, Dask's scheduler and nannies; not the sampling itself.
        cpu = {"flow": self.self_cpu - self.own_cpu}
        for pid, info in self.seen.items():
            used = info["cpu_s"] - self.before.get(pid, 0.0)
            cpu[info["kind"]] = cpu.get(info["kind"], 0.0) + used
        return cpu

    def peak_kb(self, kind: str) -> list[int]:
        return [info["peak_kb"] for info in self.seen.values() if info["kind"] == kind]


# ---------------------------------------------------------------------------------------
# The ceiling: trafilatura alone, on N processes


@functools.cache
def _options() -> dict:
    from tasks.corpus.extract import ExtractSettings, trafilatura_options

    return trafilatura_options(ExtractSettings())


def _extract(page: tuple[str, str]) -> bool:
    """One page, with the options our extractor passes (in a pool process)."""
    import trafilatura

    url, html = page
    return bool(trafilatura.extract(html, url=url, **_options()))


def _our_page_work(page: tuple[str, str]) -> bool:
    """One page through what the flow does to each page in its extraction processes:
    decode the bytes, extract text and title, run the quality filters. Not a peer: a
    reference that splits the flow's gap to the ceiling into this per-page work and the
    rest (fetching, storing, moving pages between processes, orchestration)."""
    from tasks.corpus.extract import ExtractSettings, _extract_page
    from tasks.corpus.filters import FilterSettings
    from tasks.corpus.records import Document

    url, html = page
    content_type = "text/html; charset=utf-8"
    result = _extract_page(url, html.encode(), content_type, ExtractSettings(), FilterSettings())
    return isinstance(result, Document)


def ceiling_run(pages: list[tuple[str, str]], processes: int, work=_extract) -> tuple[float, int]:
    """Seconds to do `work` (trafilatura alone, by default) on every page on a pool of
    `processes` (started and warmed before the clock starts), and how many pages gave
    text."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(work, pages[: 4 * processes], chunksize=1)  # imports, first calls
        start = time.perf_counter()
        with_text = sum(pool.imap_unordered(work, pages, chunksize=8))
        return time.perf_counter() - start, with_text


# ---------------------------------------------------------------------------------------
# Ours: the corpus flow on a local Dask cluster


def corpus_config(url_list: Path, out: Path, workers: int):
    from pipelines.corpus import CorpusConfig

    return CorpusConfig(
        links=[url_list],
        out=out,
        runner="dask",
        dask_workers=workers,
        shards=SHARDS,
        batch_size=BATCH_SIZE,
        # One extraction process per Dask worker: N workers extract on N processes.
        extract={"workers": 1},
        fetch={
            "allowed_networks": ["127.0.0.0/8"],  # loopback only
            "per_host_delay_s": PER_HOST_DELAY_S,
            "per_host_connections": PER_HOST_CONNECTIONS,
            "max_connections": MAX_CONNECTIONS,
        },
    )


def flow_run(url_list: Path, out: Path, workers: int, web: WebProcess) -> dict:
    """Run the corpus flow once: its times, counts, CPU seconds per process kind, peak RSS
    per Dask worker and extraction process, bytes on disk, and the web's request window."""
    from pipelines.corpus import run_corpus

    web.window()  # reset
    start_wall, start = time.time(), time.perf_counter()
    with Sampler(out) as sampler:
        result = run_corpus(corpus_config(url_list, out, workers))
    total = time.perf_counter() - start
    served = web.window()
    dataset_written = (out / "corpus.json").stat().st_mtime
    first_link = sampler.store_seen or start_wall
    return {
        "first_link_to_dataset_s": dataset_written - first_link,
        "start_to_first_link_s": first_link - start_wall,
        "total_s": total,
        "fetch_window_s": served["last"] - served["first"] if served["requests"] else 0.0,
        "fetch_starts_s": served["first"] - first_link if served["requests"] else 0.0,
        "requests": served["requests"],
        "documents": result.documents,
        "counts": result.counts,
        "cpu_s": sampler.cpu_by_kind(),
        "worker_peak_kb": sampler.peak_kb("dask worker"),
        "extraction_peak_kb": sampler.peak_kb("extraction"),
        "disk": disk_bytes(out),
    }


def disk_bytes(out: Path) -> dict[str, int]:
    """Bytes under the output folder: the dataset, the shards' files, and everything."""

    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    return {
        "dataset": size(out / "dataset") if (out / "dataset").exists() else 0,
        "shards": size(out / "shards") if (out / "shards").exists() else 0,
        "all": size(out),
    }


def fetch_only(urls: list[str], workers: int) -> float:
    """Seconds to fetch every URL with the flow's fetcher and settings alone, shard by shard
    and batch by batch as the workers do, `workers` shards at a time: what fetching can
    deliver when nothing else runs."""
    from tasks.corpus.fetch import fetch_batch
    from tasks.corpus.records import Link
    from tasks.corpus.shards import shard_of

    settings = corpus_config(Path("links.txt"), Path("out"), workers).fetch
    shards: dict[int, list[Link]] = {}
    for url in urls:
        shards.setdefault(shard_of(url, SHARDS), []).append(Link(url=url))

    def one_shard(links: list[Link]) -> None:
        for i in range(0, len(links), BATCH_SIZE):
            fetch_batch(links[i : i + BATCH_SIZE], settings)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_shard, shards.values()))
    return time.perf_counter() - start


def warm_up(url_list: Path, work: Path, web: WebProcess) -> float:
    """Pay the once-per-process costs before timing (Prefect's API server start, the first
    flow run's MLflow tables, imports); returns the seconds of a small flow run."""
    from prefect import flow

    @flow(name="bench-corpus-realistic-warm-up")
    def nothing() -> int:
        return 0

    nothing()
    start = time.perf_counter()
    flow_run(url_list, work / "warm-up", 2, web)
    shutil.rmtree(work / "warm-up", ignore_errors=True)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="N pages (each run: N and 4N)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-corpus-realistic-") as folder:
        root = Path(folder)
        isolate_environment(root)
        # Dask's INFO lines (every worker and client that comes and goes) would bury the report.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        from pipelines.prefect_api import prefect_api

        # One Prefect API for the flow and its Dask workers, as `gpt2lab corpus` has.
        # Without it, Prefect's temporary server is the flow's alone, and every worker
        # process starts another for itself (its start-up then counts as the flow's work).
        with prefect_api():
            return _benchmark(args, root)


def _benchmark(args: argparse.Namespace, root: Path) -> int:
    n = args.pages
    sizes = (n, 4 * n)
    web = WebProcess(4 * n)
    try:
        lists = {
            size: write_url_list(
                balanced_urls(web.origins, web.paths[:size], SHARDS), root / f"urls-{size}.txt"
            )
            for size in sizes
        }
        urls = lists[n].read_text().split()
        pages = download(urls)
        html_kb = statistics.median(len(html.encode()) for _, html in pages) / 1000
        print(
            f"realistic web: {len(web.paths)} pages on {HOSTS} loopback hosts, median "
            f"{html_kb:.1f} KB of HTML, each answered after 100-300 ms; {SHARDS} shards, "
            f"batches of {BATCH_SIZE}; politeness: {PER_HOST_CONNECTIONS} connections and "
            f"{PER_HOST_DELAY_S} s per host, {MAX_CONNECTIONS} per worker (at most "
            f"{HOSTS / PER_HOST_DELAY_S:.0f} pages/s over all hosts)",
            flush=True,
        )
        warm_s = warm_up(write_url_list(urls[:64], root / "warm-up.txt"), root, web)
        print(f"warm-up (Prefect start, then a 64-page flow run): {warm_s:.1f} s", flush=True)

        ceiling: dict[int, list[float]] = {w: [] for w in WORKERS}
        page_work: dict[int, list[float]] = {w: [] for w in WORKERS}
        runs: dict[tuple[int, int], list[dict]] = {(w, s): [] for w in WORKERS for s in sizes}
        fetch_s: dict[int, list[float]] = {w: [] for w in WORKERS}
        with_text = 0
        for repeat in range(args.repeats):
            for workers in WORKERS:
                seconds, with_text = ceiling_run(pages, workers)
                ceiling[workers].append(seconds)
                page_work[workers].append(ceiling_run(pages, workers, _our_page_work)[0])
                for size in sizes:
                    out = root / f"run-{workers}-{size}-{repeat}"
                    runs[workers, size].append(flow_run(lists[size], out, workers, web))
                    shutil.rmtree(out, ignore_errors=True)
                fetch_s[workers].append(fetch_only(urls, workers))
                web.window()
                print(f"  repeat {repeat + 1}, {workers} worker(s) done", flush=True)
    finally:
        web.stop()
    return report(args, n, with_text, ceiling, page_work, runs, fetch_s)


def report(args, n, with_text, ceiling, page_work, runs, fetch_s) -> int:
    median = statistics.median
    large = 4 * n

    def span(workers: int, size: int) -> float:
        return median(r["first_link_to_dataset_s"] for r in runs[workers, size])

    def cpu(workers: int, size: int, kind: str) -> float:
        return median(r["cpu_s"].get(kind, 0.0) for r in runs[workers, size])

    def fetch_span(workers: int, size: int) -> float:
        # From the first request the web served (the Dask workers started, their imports
        # done) to the dataset written: the rate once the cluster is up.
        return median(
            r["first_link_to_dataset_s"] - r["fetch_starts_s"] for r in runs[workers, size]
        )

    print(
        f"\ncorpus flow on realistic pages: medians of {args.repeats} runs, alternating with "
        "the ceiling's; pages/s"
    )
    print(
        f"  workers | ceiling | ours {n:>4} | ours {large:>4} | ours {large:>4}, workers up* | "
        "ratio* | per extra page** | fetching alone"
    )
    ratios = {}
    for workers in WORKERS:
        peer = n / median(ceiling[workers])
        up = large / fetch_span(workers, large)
        marginal = (large - n) / (fetch_span(workers, large) - fetch_span(workers, n))
        ratios[workers] = up / peer
        print(
            f"  {workers:>7} | {peer:7.1f} | {n / span(workers, n):9.1f} | "
            f"{large / span(workers, large):9.1f} | {up:22.1f} | {up / peer:5.2f}x | "
            f"{marginal:16.1f} | {n / median(fetch_s[workers]):14.1f}"
        )
    verdict = "meets" if ratios[2] >= TARGET_RATIO else "MISSES"
    print(
        f"  ours: from the first link read to the dataset written. * from the web's first "
        f"request (the Dask workers started and their imports done) to the dataset written; "
        f"ratio with 2 workers {ratios[2]:.2f}x (target >= {TARGET_RATIO}x: {verdict}). "
        f"** the {large - n} extra pages of the {large}-page run over the {n}-page one, both "
        "timed from the first request. Fetching alone: the flow's fetcher and settings, "
        f"shard by shard and batch by batch, on as many threads as workers, {n} pages. "
        f"Ceiling: {with_text}/{n} pages gave text."
    )

    print(
        "\nthe gap, split: the flow's per-page work alone (decode, trafilatura, title, "
        "filters) on as many processes, pages/s"
    )
    for workers in WORKERS:
        peer = n / median(ceiling[workers])
        alone = n / median(page_work[workers])
        up = large / fetch_span(workers, large)
        print(
            f"  {workers} worker(s): per-page work alone {alone:6.1f} = {alone / peer:.2f}x the "
            f"ceiling; the flow {up / alone:.2f}x its own per-page work"
        )

    print(f"\nwhere the time goes: the {large}-page runs, CPU ms per page by process kind")
    kinds = ("flow", "dask worker", "extraction", "web", "prefect", "other")
    names = {
        "flow": "flow process (Prefect, Dask scheduler, collect, dedup, export, MLflow)",
        "dask worker": "Dask workers (fetch, store, shard files)",
        "extraction": "extraction processes (decode, trafilatura, filters)",
        "web": "web server",
        "prefect": "Prefect API server",
        "other": "other",
    }
    for workers in WORKERS:
        before = median(r["fetch_starts_s"] for r in runs[workers, large])
        up = fetch_span(workers, large)
        print(
            f"  {workers} worker(s): first link -> dataset {span(workers, large):.1f} s, of "
            f"which {before:.1f} s before the first request (the workers' start); the "
            f"ceiling's {median(ceiling[workers]) / n * 1000 * workers:.1f} process-ms a page."
            " CPU ms a page (whole runs, fixed costs included: upper bounds):"
        )
        for kind in kinds:
            per_page = cpu(workers, large, kind) / large * 1000
            if kind != "other" or per_page > 0.05:
                print(f"    {per_page:6.2f}  {names[kind]}")
        busy = cpu(workers, large, "extraction") / (up * workers)
        print(f"    extraction processes busy {busy:.0%} of the time from the first request")

    warnings = [check_counts(r["counts"], size) for (_, size), rs in runs.items() for r in rs]
    print("\nstorage per document (the 2-worker runs' output folders)")
    for size in (n, large):
        last = runs[2, size][-1]
        documents = max(last["documents"], 1)
        shown = ", ".join(
            f"{label} {last['disk'][key] / documents / 1e3:.1f} KB"
            for key, label in (("dataset", "dataset"), ("shards", "shard files"), ("all", "all"))
        )
        print(f"  {size:>5} pages, {last['documents']} documents kept: {shown}")

    print(f"\npeak RSS per process ({SHARDS} shards: 4x the pages make each shard 4x larger)")
    worst = 0.0
    for workers in WORKERS:
        for kind in ("dask worker", "extraction"):
            key = "worker_peak_kb" if kind == "dask worker" else "extraction_peak_kb"
            small, big = (max(kb for r in runs[workers, s] for kb in r[key]) for s in (n, large))
            worst = max(worst, big / small)
            print(
                f"  {workers} worker(s), largest {kind:11}: {small / 1024:4.0f} MiB at {n} "
                f"pages, {big / 1024:4.0f} MiB at {large} ({big / small:.2f}x)"
            )
    verdict = "meets" if worst < MEMORY_TARGET else "MISSES"
    print(f"  largest ratio {worst:.2f}x (target < {MEMORY_TARGET}x: {verdict})")
    for warning in filter(None, warnings):
        print(warning)
    return 1 if any(warnings) else 0


if __name__ == "__main__":
    sys.exit(main())
