"""prefect.yaml's `corpus` and `encode` deployments run their stage as the command line does:
on the task runner the config names (`dask_address`), with the output folder locked.

Each test loads the deployment's flow from its entrypoint string, as a worker does, and
runs it in this process against the test harness's Prefect API.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

from pipelines.corpus import CorpusConfig
from pipelines.encode import EncodeConfig
from pipelines.run_lock import FolderInUseError
from pipelines.services import free_port
from tests.tasks.encode.conftest import varied_corpus

ROOT = Path(__file__).resolve().parents[2]


def _deployed(name: str) -> Flow:
    """The flow prefect.yaml's deployment `name` runs, loaded the way a worker loads it."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (entrypoint,) = [d["entrypoint"] for d in spec["deployments"] if d["name"] == name]
    return load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)


@pytest.fixture
def links(tmp_path: Path) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("http://127.0.0.1:9/page\n")  # never fetched: each run stops first
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return varied_corpus(tmp_path / "corpus", 20_000, seed=3)


def test_the_corpus_and_encode_deployments_go_to_the_dask_address_of_their_config(
    workspace, prefect_harness, receiver, links, corpus, tmp_path, monkeypatch, gpt2_vocab_dir
):
    # Nothing listens there: the run stops at once, with the one-line error of the CLI.
    monkeypatch.setattr("pipelines.dask_cluster.SCHEDULER_TIMEOUT_S", 0.5)
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    configs = {
        "corpus": CorpusConfig(links=[links], out=tmp_path / "c", dask_address=nowhere),
        "encode": EncodeConfig(
            corpus=corpus, out=tmp_path / "t", tokenizer=str(gpt2_vocab_dir), dask_address=nowhere
        ),
    }
    for name, config in configs.items():
        with pytest.raises(ValueError, match="no Dask scheduler answered") as failed:
            _deployed(name)(config)
        assert f"dask_address {nowhere}: " in str(failed.value), name
        assert "\n" not in str(failed.value), name
    # The stage's flow failed inside the deployment's: one notice per run, from the latter.
    assert [n["flow"] for n in receiver.received] == ["corpus-deployment", "encode-deployment"]
    assert all("no Dask scheduler answered" in n["error"] for n in receiver.received)


def test_the_encode_deployment_encodes_its_parts_on_the_dask_cluster(
    workspace, prefect_harness, corpus, tmp_path, gpt2_vocab_dir
):
    from distributed import Client, LocalCluster, get_task_stream

    # One worker thread in this process: cheap to start, and a task it runs shows in the
    # scheduler's task stream (on the flow's own threads, none would).
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        config = EncodeConfig(
            corpus=corpus,
            out=tmp_path / "tokens",
            tokenizer=str(gpt2_vocab_dir),
            val_fraction=0.3,  # 10 documents: 3 for validation
            dask_address=cluster.scheduler_address,
        )
        result = _deployed("encode")(config)
    on_dask = [task["key"] for task in stream.data if task["key"].startswith("encode_part-")]
    assert result.parts_encoded >= 1
    assert len(on_dask) == result.parts_encoded


def test_the_corpus_deployment_refuses_an_output_folder_another_run_writes(
    workspace, prefect_harness, links, tmp_path
):
    out = tmp_path / "corpus"
    hold = "import sys; from pipelines.run_lock import folder_lock\n"
    hold += f"with folder_lock({str(out)!r}):\n    print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match="is being written by another run"):
            _deployed("corpus")(CorpusConfig(links=[links], out=out))
    finally:
        holder.communicate("", timeout=30)  # end of its stdin: it lets go and exits
