"""The encode flow with its parts on a dask.distributed cluster, as the corpus flow's shards.

A cluster of 2 worker processes is started in the test and the flow is pointed at its
scheduler address, exactly as a user points it at a real cluster whose workers share the
corpus and tokens folders. The token shards must be the ones a run on this machine writes.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from pipelines.dask_cluster import DASK_SCHEDULER_TAG
from pipelines.encode import EncodeConfig, run_encode
from tasks.encode.token_shards import read_meta
from tests.tasks.encode.conftest import varied_corpus

pytestmark = pytest.mark.slow


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return varied_corpus(tmp_path / "corpus", 200_000, seed=5)


def _config(corpus: Path, out: Path, tokenizer: Path, **changes) -> EncodeConfig:
    # 40 KB parts: five parts, so that both workers get some.
    return EncodeConfig(
        corpus=corpus, out=out, tokenizer=str(tokenizer), val_fraction=0.1, shard_mb=0.04,
        threads=1, **changes,
    )  # fmt: skip


def test_the_parts_encoded_on_two_dask_workers_are_the_same_shards(
    workspace, prefect_harness, corpus, tmp_path, gpt2_vocab_dir
):
    # prefect_harness: one API for the flow and its workers, as the CLI's (without it,
    # every worker process would start a temporary Prefect server of its own).
    from distributed import Client, LocalCluster, get_task_stream
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    here = run_encode(_config(corpus, tmp_path / "here", gpt2_vocab_dir))
    with ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        )
        client = stack.enter_context(Client(cluster))
        with get_task_stream(client) as stream:  # every task the scheduler ran meanwhile
            there = run_encode(
                _config(
                    corpus, tmp_path / "there", gpt2_vocab_dir,
                    dask_address=cluster.scheduler_address,
                )
            )  # fmt: skip
        workers = {task["worker"] for task in stream.data if task["key"].startswith("encode_part-")}

    assert here.parts_encoded == there.parts_encoded == 5
    assert there.fingerprint == here.fingerprint
    assert there.tokens == here.tokens and there.documents == here.documents
    assert read_meta(there.tokens_dir).shards == read_meta(here.tokens_dir).shards
    assert len(workers) == 2  # both workers encoded parts
    run = MlflowClient(mlflow_tracking_uri()).get_run(there.mlflow_run_id)
    assert run.data.tags[DASK_SCHEDULER_TAG] == cluster.scheduler_address
