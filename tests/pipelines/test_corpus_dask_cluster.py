"""The corpus flow on a dask.distributed cluster whose workers share only a folder.

Two mini-webs (two hosts, so the links fall into several shards) are served inside a
loopback-only network namespace; a cluster of 2 worker processes is started in the test and
the flow is pointed at its scheduler address, exactly as a user points it at a real cluster.
The corpus must be the one the default runner builds: same fingerprint, same manifest.
The flow and the workers report to one Prefect API (the harness), as under the CLI; without
one, every worker process would start a temporary Prefect server of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

from pipelines.corpus import CorpusConfig, run_corpus
from pipelines.dask_cluster import DASK_SCHEDULER_TAG
from tasks.corpus.miniweb import MiniWeb, write_submissions_dump
from tasks.corpus.shards import DONE_FILE, FATES_FILE
from tests.pipelines.test_corpus_flow import FAST_FETCH, _manifest, _recorded_urls
from tests.tasks.corpus.netns import loopback_only

pytestmark = pytest.mark.slow


def _serve_two_hosts(stack: ExitStack, tmp_path: Path, **options) -> tuple[list[MiniWeb], list]:
    webs = [
        stack.enter_context(
            MiniWeb(articles=8, seed=seed, stall_s=4, huge_bytes=3_000_000, **options)
        )
        for seed in (0, 1)
    ]
    dumps = [write_submissions_dump(tmp_path / f"dump{i}.jsonl", w) for i, w in enumerate(webs)]
    return webs, dumps


def _config(dumps: list[Path], out: Path, **changes) -> CorpusConfig:
    return CorpusConfig(
        links=dumps, out=out, batch_size=4, fetch=FAST_FETCH, extract={"workers": 1}, **changes
    )


def _cluster(stack: ExitStack):
    """2 worker processes, 1 thread each; non-daemonic so that their extraction pools may
    start processes (as `DASK_DISTRIBUTED__WORKER__DAEMON=False` does for `dask worker`)."""
    import dask
    from distributed import Client, LocalCluster

    stack.enter_context(dask.config.set({"distributed.worker.daemon": False}))
    cluster = stack.enter_context(
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    )
    return cluster, stack.enter_context(Client(cluster))


def _hits(webs: list[MiniWeb]) -> Counter:
    """Requests served, by (origin, path)."""
    return Counter({(web.base_url, path): n for web in webs for path, n in web.hits.items()})


def _key(url: str) -> tuple[str, str]:
    scheme, _, host, path = url.split("/", 3)
    return f"{scheme}//{host}", "/" + path


def _assert_no_shard_half_written(shared: Path) -> None:
    assert not list(shared.rglob("*.tmp-*"))
    for folder in (shared / "shards").iterdir():
        if folder.is_dir():
            assert (folder / DONE_FILE).exists() and (folder / FATES_FILE).exists(), folder


@loopback_only
def test_two_dask_workers_sharing_a_folder_build_the_same_corpus(
    workspace, prefect_harness, tmp_path
):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    with ExitStack() as stack:
        webs, dumps = _serve_two_hosts(stack, tmp_path)
        default = run_corpus(_config(dumps, tmp_path / "default"))
        cluster, _ = _cluster(stack)
        shared = tmp_path / "shared"
        result = run_corpus(
            _config(
                dumps,
                tmp_path / "out",
                dask_address=cluster.scheduler_address,
                shared=shared.as_uri(),  # an fsspec URL: file://...
            )
        )
        hits = _hits(webs)
        origins = [web.base_url for web in webs]

    assert result.fingerprint == default.fingerprint
    assert result.documents == default.documents > 0
    assert _manifest(result.manifest) == _manifest(default.manifest)
    shards = [p for p in (shared / "shards").iterdir() if p.is_dir()]
    assert len(shards) >= 2  # the two hosts (and the refused outside ones) were spread
    _assert_no_shard_half_written(shared)
    robots = [hits[(origin, "/robots.txt")] for origin in origins]
    assert robots == [2, 2]  # once per host and run
    run = MlflowClient(mlflow_tracking_uri()).get_run(result.mlflow_run_id)
    assert run.data.tags[DASK_SCHEDULER_TAG] == cluster.scheduler_address


@loopback_only
def test_a_killed_dask_worker_loses_nothing_and_fetches_nothing_twice(
    workspace, prefect_harness, tmp_path
):
    shared = tmp_path / "shared"
    with ExitStack() as stack:
        webs, dumps = _serve_two_hosts(stack, tmp_path, delay_s=0.15)
        cluster, client = _cluster(stack)
        preset = tmp_path / "corpus.toml"
        preset.write_text(
            "batch_size = 4\n[extract]\nworkers = 1\n[fetch]\n"
            + "".join(f"{key} = {json.dumps(value)}\n" for key, value in FAST_FETCH.items())
        )
        options = [*(a for d in dumps for a in ("--links", str(d))), "--config", str(preset)]
        options += ["--out", str(tmp_path / "out"), "--shared", str(shared)]
        options += ["--dask-address", cluster.scheduler_address]
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
        driver = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "corpus", *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        stack.callback(lambda: driver.poll() is None and driver.kill())

        # Kill (SIGKILL) a worker that is working on a shard, once some URLs are recorded.
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy and len(_recorded_urls(shared)) >= 6:
                victim = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            else:
                time.sleep(0.1)
        assert victim is not None, "the run ended before a worker could be killed"
        os.kill(victim, signal.SIGKILL)
        # Shards caught half-way: progress in their store, no marker yet.
        interrupted = [
            folder
            for folder in (shared / "shards").iterdir()
            if (folder / "work").exists() and not (folder / DONE_FILE).exists()
        ]
        recorded = _recorded_urls(shared)
        hits_before = _hits(webs)

        output, _ = driver.communicate(timeout=240)
        assert driver.returncode == 0, output[-3000:]
        hits_after = _hits(webs)
        reference = run_corpus(_config(dumps, tmp_path / "reference"))

    assert interrupted
    assert "Dask dashboard:" in output
    # Nothing whose fate was recorded before the kill was fetched again ...
    assert recorded
    for url in recorded:
        assert hits_after[_key(url)] == hits_before[_key(url)], url
    # ... no shard is left half-written, and the corpus is the uninterrupted one.
    _assert_no_shard_half_written(shared)
    resumed = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert resumed["fingerprint"] == reference.fingerprint
    assert _manifest(tmp_path / "out" / "manifest.jsonl") == _manifest(reference.manifest)
