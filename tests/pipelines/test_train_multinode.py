"""Training across machines, on one: two torchrun "nodes" meet at a c10d rendezvous on
loopback (gloo, one process each, one shared run folder) and follow the same losses as a
single process with the same batch. docs/train.md shows the command this test runs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pipelines.train import RESULT_FILE, torchrun_node_command
from reports.mlflow_names import TRAIN_LOSS
from tasks.train.loop import train
from tests.pipelines.distributed_helpers import assert_same_losses, small_config

LOOPBACK = "127.0.0.1"
NODES = 2
# Both nodes must have finished by then; past it they are killed and the test fails.
DEADLINE_S = 300
STOP_S = 45  # torchrun's own grace for its workers is 30 s
DOCS = Path(__file__).parents[2] / "docs" / "train.md"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def _loopback_only_env() -> dict[str, str]:
    """The nodes' environment: gloo bound to the loopback interface (otherwise it takes the
    address the host name resolves to, which may be another interface), one thread each."""
    return os.environ | {
        "GLOO_SOCKET_IFNAME": "lo",
        "MASTER_ADDR": LOOPBACK,
        "OMP_NUM_THREADS": "1",
    }


def _run_nodes(commands: list[list[str]], logs: Path, tracking_uri: str) -> list[int]:
    """Start every node at once, wait for all up to DEADLINE_S, and stop whatever is left.

    torchrun starts its workers in sessions of their own, so killing torchrun alone would
    leave them behind: SIGTERM first (torchrun passes it on and reaps them within 30 s),
    then SIGKILL to anything still there."""
    nodes: list[subprocess.Popen] = []
    try:
        for i, command in enumerate(commands):
            with (logs / f"node-{i}.log").open("w") as log:
                nodes.append(
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_loopback_only_env() | {"MLFLOW_TRACKING_URI": tracking_uri},
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + DEADLINE_S
        return [node.wait(timeout=max(1.0, deadline - time.monotonic())) for node in nodes]
    finally:
        left = [node for node in nodes if node.poll() is None]
        for node in left:
            os.killpg(node.pid, signal.SIGTERM)
        for node in left:
            try:
                node.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


@pytest.mark.slow
def test_two_nodes_on_loopback_match_one_process_and_rank_0_logs(workspace, tokens_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import tracked_run
    from pipelines.workspace import mlflow_tracking_uri

    single = train(small_config(tokens_dir, None).loop_settings(), tmp_path / "single")

    # The run folder both "machines" see, as they would on shared storage.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train-config.json").write_text(small_config(tokens_dir, run_dir).model_dump_json())
    with tracked_run("train", run_name="two-nodes") as run:
        command = torchrun_node_command(
            run_dir / "train-config.json",
            run_dir,
            nnodes=NODES,
            nproc_per_node=1,
            rendezvous_endpoint=f"{LOOPBACK}:{_free_port()}",
            rendezvous_id=uuid.uuid4().hex,
            local_addr=LOOPBACK,
            mlflow_run_id=run.info.run_id,
        )
        codes = _run_nodes([command] * NODES, tmp_path, mlflow_tracking_uri())

    logs = [(tmp_path / f"node-{i}.log").read_text() for i in range(NODES)]
    assert codes == [0] * NODES, "\n".join(log[-2000:] for log in logs)
    # They met: one world of 2 processes, one on each node (each alone would be a world of
    # 1, and would match the single process just as well).
    places = [re.findall(r"process (\d+) of (\d+) \(local 0\)", log) for log in logs]
    assert sorted(places) == [[("0", "2")], [("1", "2")]]
    assert_same_losses(single, json.loads((run_dir / RESULT_FILE).read_text()))
    # Global rank 0 alone, on one of the nodes, wrote the checkpoints (one set) and logged.
    folders = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert folders == ["best", "step-000006", "step-000012"]
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    history = client.get_metric_history(run.info.run_id, TRAIN_LOSS)
    assert sorted(m.step for m in history) == list(range(1, 13))  # once each


def test_the_docs_show_the_command_the_test_runs():
    """docs/train.md's multi-node command is this test's, with placeholders."""
    command = torchrun_node_command(
        Path("RUN/train-config.json"),
        Path("RUN"),
        nnodes=NODES,
        nproc_per_node=1,
        rendezvous_endpoint="HOST_OF_ONE_NODE:PORT",
        rendezvous_id="RUN_ID",
        local_addr="THIS_HOST",
        mlflow_run_id="MLFLOW_RUN_ID",
    )
    assert command[1:3] == ["-m", "torch.distributed.run"]  # `torchrun` is this module
    shown = re.search(r"```\n(torchrun --nnodes.*?)```", DOCS.read_text(), re.DOTALL)
    assert shown is not None, f"no multi-node torchrun block in {DOCS}"
    assert shown.group(1).replace("\\\n", " ").split() == ["torchrun", *command[3:]]
