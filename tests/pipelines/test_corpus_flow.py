"""The corpus flow end to end on the mini-web: real HTTP, real Prefect, real MLflow.

The submissions dump points at outside and private addresses too (that is part of what
the flow must refuse), so every test that runs the flow does so inside a loopback-only
network namespace (`@loopback_only`): nothing can leave the machine even if the code
under test were wrong. Servers are started inside the test body, i.e. inside the
namespace.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from pipelines.corpus import CorpusConfig, corpus_flow, run_corpus
from tasks.corpus.miniweb import MiniWeb, submission_lines, write_submissions_dump
from tests.tasks.corpus.netns import loopback_only

# Test-sized politeness: our own loopback server, short timeouts, quick retries.
FAST_FETCH = {
    "allowed_networks": ["127.0.0.1/32"],  # the mini-web only; 10.x etc. stay refused
    "per_host_delay_s": 0.0,
    "per_host_connections": 4,
    "total_timeout_s": 1.5,
    "retries": 2,
    "backoff_base_s": 0.05,
    "backoff_max_s": 2.0,
    "max_bytes": 1_000_000,  # below the mini-web's oversized pages
}


def _mini_web(**options) -> MiniWeb:
    return MiniWeb(articles=10, stall_s=4, huge_bytes=3_000_000, **options)


def _config(dump: Path, out: Path, **changes) -> CorpusConfig:
    return CorpusConfig(
        links=[dump], out=out, batch_size=8, fetch=FAST_FETCH, extract={"workers": 1}, **changes
    )


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@loopback_only
def test_corpus_flow_on_the_mini_web(workspace, tmp_path):
    import datasets
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    with _mini_web() as web:
        dump = write_submissions_dump(tmp_path / "dump.jsonl.gz", web)
        result = corpus_flow(_config(dump, tmp_path / "out"))
        hits = Counter(web.hits)
        dump_lines = sum(1 for line in submission_lines(web) if line.strip())  # blanks skipped

    # The dataset: the promised columns, one row per kept page, boilerplate gone.
    dataset = datasets.load_from_disk(str(result.dataset))
    columns = {"url", "title", "text", "karma", "subreddit", "fetched_at", "content_hash"}
    assert set(dataset.column_names) == columns
    assert len(dataset) == result.documents > 0
    assert len(set(dataset["url"])) == len(dataset)
    by_path = {
        url.split(":", 2)[2].split("/", 1)[1]: row
        for url, row in zip(dataset["url"], dataset, strict=True)
    }
    first = web.articles[0]
    assert web.article(first).paragraphs[0][:60] in by_path[first.lstrip("/")]["text"]

    # Every line of the dump has exactly one fate, and each bad case the fate it deserves.
    manifest = _manifest(result.manifest)
    assert len(manifest) == dump_lines
    fate_of = {row["url"].split("/", 3)[-1]: row for row in manifest if row["url"]}
    for case in web.bad_cases:
        row = fate_of[case.path.lstrip("/")]
        if case.fetch != "ok" and row["stage"] != "links":  # .png/.txt go at the link rules
            assert row["reason"] == case.fetch and row["fate"] != "kept", case.name
    expected_later = {
        "empty": "no_main_text",
        "script_only": "no_main_text",
        "german": "not_english",
        "french": "not_english",
    }
    for name, reason in expected_later.items():
        assert fate_of[web.case(name).path.lstrip("/")]["reason"] == reason, name
    for name in ("exact_duplicate", "near_duplicate"):
        # A copy is dropped as a duplicate when its original was kept (an original that a
        # filter dropped leaves nothing to be a duplicate of).
        original = web.case(name).later.split()[-1].lstrip("/")
        if fate_of[original]["fate"] == "kept":
            assert fate_of[web.case(name).path.lstrip("/")]["reason"] == name
    for name in ("server_error_once", "rate_limited_once", "xhtml", "redirect_ok"):
        assert fate_of[web.case(name).path.lstrip("/")]["fate"] == "kept", name
    link_reasons = {row["reason"] for row in manifest if row["stage"] == "links"}
    assert {"not_json", "no_url", "bad_scheme", "low_score", "wikipedia"} <= link_reasons
    assert all(row["source"].startswith("dump.jsonl.gz:") for row in manifest)

    # Politeness: robots.txt read once; no page fetched twice except the retried ones.
    assert hits["/robots.txt"] == 1
    retried = {web.case(n).path for n in ("server_error_once", "rate_limited_once")}
    assert all(n == 1 for path, n in hits.items() if path.startswith("/articles/"))
    assert all(hits[path] == 2 for path in retried)

    # MLflow: the funnel, the drop reasons, charts and samples, tied to the corpus.
    client = MlflowClient(mlflow_tracking_uri())
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["gpt2lab.lineage.corpus"] == result.fingerprint
    metrics = run.data.metrics
    assert metrics["funnel/0_links_read"] == len(manifest)
    assert metrics["funnel/5_after_dedup"] == result.documents
    assert metrics["drops/failed.fetch.robots_disallowed"] == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, "charts")}
    assert {
        "charts/funnel.png",
        "charts/lengths.png",
        "drop_reasons.json",
        "samples_kept.json",
        "samples_dropped.json",
    } <= artifacts


@loopback_only
def test_dask_runner_gives_the_same_dataset(workspace, tmp_path):
    with _mini_web() as web:
        dump = write_submissions_dump(tmp_path / "dump.jsonl", web)
        default = run_corpus(_config(dump, tmp_path / "default"))
        dask = run_corpus(_config(dump, tmp_path / "dask", runner="dask", dask_workers=2))
    assert dask.fingerprint == default.fingerprint
    assert dask.documents == default.documents > 0
    assert _manifest(dask.manifest) == _manifest(default.manifest)


@loopback_only
def test_shards_on_an_object_store_give_the_same_dataset(workspace, tmp_path, monkeypatch):
    # fsspec's in-memory file system stands for s3:// (none is reachable offline): shard
    # files are uploaded whole, with no rename, and each shard works in a scratch folder.
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
    with _mini_web() as web:
        dump = write_submissions_dump(tmp_path / "dump.jsonl", web)
        default = run_corpus(_config(dump, tmp_path / "default"))
        remote = run_corpus(_config(dump, tmp_path / "remote", shared="memory://corpus"))
    assert remote.fingerprint == default.fingerprint
    assert _manifest(remote.manifest) == _manifest(default.manifest)
    assert not (tmp_path / "remote" / "shards").exists()  # the shards were elsewhere


@loopback_only
def test_ipv6_literal_and_odd_links_each_get_a_fate_and_the_run_finishes(workspace, tmp_path):
    # The mini-web on ::1: its links are IPv6 literals with a port, the form that once
    # ended whole runs in the robots.txt step. Around them, every odd form a dump can hold.
    with MiniWeb(articles=3, host="::1", stall_s=4) as web:
        port = web.base_url.rsplit(":", 1)[1]
        article, third = web.articles[0], web.url(web.articles[2])
        lines = [
            web.url(article),  # kept
            web.url(web.articles[1]),  # kept
            f"http://user:secret@[::1]:{port}{web.articles[2]}",  # kept, without userinfo
            f"http://[0:0:0:0:0:0:0:1]:{port}{article}",  # the first link spelt otherwise
            web.url(web.case("robots_disallowed").path),
            web.url("/no-such-page%zz%00"),  # 404
            "http://[::1]/",  # no port: port 80, where nothing listens
            f"http://[::ffff:127.0.0.1]:{port}/",  # IPv4 loopback in IPv6 clothing
            "http://[::1",
            f"http://[v1.x]:{port}/",
            f"http://[fe80::1%25lo]:{port}/",
            "http://[::1]:99999/",
            "http://[::1]:0/",
            "http://exa\x00mple.com/",
            "http://bücher.example/",  # IDNA; no DNS in the namespace
            "http://example.com/" + "a" * 10_000,
            f"http://::1:{port}/",  # an IPv6 address without its brackets
            "gopher://[::1]/",
            "http:///no-host",
        ]
        dump = tmp_path / "dump.jsonl"
        dump.write_text(
            "".join(json.dumps({"url": url, "score": 5}) + "\n" for url in lines)
            # A lone surrogate: valid JSON, but not text that can be stored.
            + '{"url": "http://example.com/\\ud800", "score": 5}\n'
        )
        fetch = {**FAST_FETCH, "allowed_networks": ["::1/128"], "retries": 0}
        config = CorpusConfig(
            links=[dump], out=tmp_path / "out", batch_size=4, fetch=fetch, extract={"workers": 1}
        )
        result = corpus_flow(config)
        hits = Counter(web.hits)

    manifest = _manifest(result.manifest)
    assert len(manifest) == len(lines) + 1  # one fate per line, none pending
    assert all(row["fate"] in {"kept", "dropped", "failed"} for row in manifest)
    reason = [row["reason"] if row["fate"] != "kept" else "kept" for row in manifest]
    # Kept pages may still fall to the filters (short mini-web pages): fetched is enough.
    assert all(row["stage"] not in {"links", "fetch"} for row in manifest[:3]), manifest[:3]
    assert manifest[2]["url"] == third
    assert reason[3:] == [
        "duplicate_url",
        "robots_disallowed",
        "http_404",
        "connection_error",
        "private_address",
        *["invalid_url"] * 5,
        "invalid_url",  # control character in the host
        "connection_error",
        "invalid_url",  # overlong
        "invalid_url",  # no brackets: "::1:PORT" is no host name
        "bad_scheme",
        "invalid_url",
        "invalid_url",  # the lone surrogate
    ]
    assert hits["/robots.txt"] == 1


def _recorded_urls(out: Path) -> set[str]:
    """The URLs the run has fetched so far: in a shard's working store (with a fate, or
    fetched and waiting for extraction) or in a finished shard's published fates. Read-only,
    and a store being deleted as its shard finishes is simply skipped."""
    import pyarrow.parquet as pq

    urls: set[str] = set()
    for state in out.glob("shards/*/work/state.sqlite"):
        try:
            with closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
                rows = db.execute("SELECT url FROM links WHERE state != 'pending'").fetchall()
        except sqlite3.Error:
            continue
        urls.update(url for (url,) in rows)
    for fates in out.glob("shards/*/fates.parquet"):
        table = pq.read_table(fates, columns=["url", "fate"]).to_pylist()
        urls.update(row["url"] for row in table if row["fate"] != "pending")
    return urls


@loopback_only
def test_a_killed_run_resumes_without_fetching_anything_twice(workspace, tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    with _mini_web(delay_s=0.15) as web:
        dump = write_submissions_dump(tmp_path / "dump.jsonl.zst", web)
        preset = tmp_path / "corpus.toml"
        preset.write_text(
            "batch_size = 4\n[extract]\nworkers = 1\n[fetch]\n"
            + "".join(f"{key} = {json.dumps(value)}\n" for key, value in FAST_FETCH.items())
        )
        out = tmp_path / "out"
        options = ["--links", str(dump), "--out", str(out), "--config", str(preset)]
        command = [sys.executable, "-m", "pipelines.cli", "corpus", *options]

        first = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if len(_recorded_urls(out)) >= 8:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it could be killed"
        os.killpg(first.pid, signal.SIGKILL)  # the flow, its extraction workers, Prefect
        first.wait()
        recorded = _recorded_urls(out)
        hits_before = Counter(web.hits)

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-2000:]
        hits_after = Counter(web.hits)

        reference = corpus_flow(_config(dump, tmp_path / "reference"))

    # Nothing recorded before the kill was fetched again ...
    for url in recorded:
        path = "/" + url.split("/", 3)[-1]
        assert hits_after[path] == hits_before[path], url
    # ... and the output is exactly what an uninterrupted run gives: nothing lost or doubled.
    resumed = json.loads((out / "corpus.json").read_text())
    assert resumed["fingerprint"] == reference.fingerprint
    assert _manifest(out / "manifest.jsonl") == _manifest(reference.manifest)


def test_bad_corpus_options_are_one_line_errors(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    out = ["--out", str(tmp_path / "out")]
    result = runner.invoke(app, ["corpus", "--links", str(tmp_path / "none.jsonl"), *out])
    assert result.exit_code == 2 and "link input not found" in result.output
    (tmp_path / "links.txt").write_text("https://example.org/a\n")
    (tmp_path / "bad.toml").write_text("[fetch]\nmax_bytes = -1\n")
    config = ["--config", str(tmp_path / "bad.toml")]
    result = runner.invoke(app, ["corpus", "--links", str(tmp_path / "links.txt"), *out, *config])
    assert result.exit_code == 2
    assert f"{tmp_path / 'bad.toml'}: fetch.max_bytes:" in result.output
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.fixture(autouse=True)
def _quiet_extraction_pools():
    """Stop extraction workers after each test so none outlives it."""
    yield
    from tasks.corpus.extract import shutdown_pools

    shutdown_pools()


@loopback_only
def test_another_shard_count_for_a_started_run_is_a_one_line_error(workspace, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    links = tmp_path / "links.txt"
    links.write_text("https://example.org/a 5\n")
    plan = tmp_path / "out" / "shards" / "plan.json"  # as a run cut into 3 shards left it
    plan.parent.mkdir(parents=True)
    plan.write_text(json.dumps({"n_shards": 3, "shards": [1]}))
    options = ["--links", str(links), "--out", str(tmp_path / "out"), "--shards", "2"]
    result = CliRunner().invoke(app, ["corpus", *options])
    assert result.exit_code == 2
    assert f"{plan}: this run was cut into 3 shards" in result.output
    assert not (tmp_path / "out" / "shards" / "00001").exists()  # nothing was fetched


@loopback_only
def test_a_corpus_that_keeps_nothing_says_why_and_another_fetch_policy_is_another_run(
    workspace, tmp_path
):
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "out"
    with _mini_web() as web:
        links = tmp_path / "links.txt"
        links.write_text("".join(f"{web.url(path)} 5\n" for path in web.articles[:3]))
        options = ["corpus", "--links", str(links), "--out", str(out)]
        # No --allow-network: the mini-web's loopback address is refused, as it should be.
        refused = CliRunner().invoke(app, options)
        assert refused.exit_code == 0, refused.output
        assert "0 documents" in refused.output
        assert "no document was kept from 3 links" in refused.output
        assert "private_address (3)" in refused.output
        assert "--allow-network NETWORK" in refused.output
        assert sum(web.hits.values()) == 0  # nothing was fetched, not even robots.txt

        # The same folder with a new fetch policy: refused, as new inputs are.
        again = CliRunner().invoke(app, [*options, "--allow-network", "127.0.0.1/32"])
    assert again.exit_code == 2, again.output
    assert "this run fetched with allowed_networks = [], now ['127.0.0.1/32']" in again.output
    assert "use a new output folder" in again.output
