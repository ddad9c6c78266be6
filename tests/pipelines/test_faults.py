"""Faults in the middle of a run: a tracking server that goes away and comes back."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.services import answers, free_port
from pipelines.train import TrainConfig, run_train


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that a test can stop and start again, on the same
    port and the same SQLite backend store."""

    def __init__(self, backend: Path, artifacts: Path, log: Path) -> None:
        self.backend, self.artifacts, self.log = backend, artifacts, log
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1"]
        command += ["--backend-store-uri", f"sqlite:///{self.backend.as_posix()}"]
        command += ["--artifacts-destination", self.artifacts.as_uri()]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not answers(f"{self.address}/health"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        assert not answers(f"{self.address}/health")


@pytest.fixture
def mlflow_server(tmp_path, mlflow_template_db, monkeypatch) -> Iterator[MlflowServer]:
    backend = tmp_path / "server.db"
    shutil.copyfile(mlflow_template_db, backend)
    server = MlflowServer(backend, tmp_path / "artifacts", tmp_path / "mlflow-server.log")
    server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.address)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield server
    finally:
        server.stop()


def when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Run `then` in a thread once `condition` holds (checked every 0.2 s, for 2 minutes)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.2)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def logged_steps(backend: Path) -> int:
    """The highest step of loss/train the server has stored, read from its database."""
    with sqlite3.connect(backend) as db:
        (step,) = db.execute("SELECT MAX(step) FROM metrics WHERE key = 'loss/train'").fetchone()
    return step or 0


@pytest.mark.slow
def test_training_goes_on_while_the_tracking_server_is_away_and_loses_no_metric(
    workspace, prefect_harness, tokens_dir, mlflow_server
):
    from mlflow.tracking import MlflowClient

    outage: dict[str, float] = {}

    def stop_for_a_while() -> None:
        mlflow_server.stop()
        outage["from"] = time.time()
        time.sleep(12)
        mlflow_server.start()
        outage["to"] = time.time()

    # Stop the server once the first metrics reached it: mid-run, the run already open.
    watcher = when(lambda: logged_steps(mlflow_server.backend) >= 10, stop_for_a_while)
    config = TrainConfig(
        tokens=tokens_dir,
        name="outage",
        model="tiny",
        context=64,
        micro_batch=8,
        batch_tokens=512,
        max_steps=400,
        warmup_steps=10,
        eval_interval=100,
        eval_batches=2,
        checkpoint_interval=100,
        register_as=None,
        prompts=["The"],
        sample_tokens=8,
    )
    result = run_train(config)
    watcher.join(60)

    assert result.steps == 400 and {"from", "to"} <= outage.keys()
    client = MlflowClient(mlflow_server.address)
    history = client.get_metric_history(result.mlflow_run_id, "loss/train")
    assert sorted(m.step for m in history) == list(range(1, 401))  # none lost, none twice
    # Training went on while the server was away: steps were measured in that time.
    during = [m for m in history if outage["from"] * 1000 < m.timestamp < outage["to"] * 1000]
    assert during, "no step was measured while the tracking server was away"
    assert len(client.get_metric_history(result.mlflow_run_id, "loss/val")) == 4
    samples = {a.path for a in client.list_artifacts(result.mlflow_run_id, "samples")}
    assert samples == {f"samples/step-{s:06d}.txt" for s in (100, 200, 300, 400)}
    assert client.get_run(result.mlflow_run_id).info.status == "FINISHED"


def test_a_tracking_server_that_never_comes_back_ends_in_one_line_and_keeps_the_points(
    tokens_dir, tmp_path, monkeypatch
):
    import json
    import logging

    from pipelines.tracking import TrackingUnavailable
    from pipelines.train import UNLOGGED_FILE, MlflowProgress
    from tasks.train.loop import StepMetrics

    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    config = TrainConfig(tokens=tokens_dir, out=tmp_path / "run", tracking_patience_s=2)
    progress = MlflowProgress("run-1", config, tokens_dir, logging.getLogger("test"))
    for step in (1, 2, 3):
        progress.on_step(step, StepMetrics(3.0 - step / 10, 1e-3, 0.5, 1000.0, None))

    with pytest.raises(TrackingUnavailable) as raised:
        progress.close()
    message = str(raised.value)
    assert "\n" not in message and gone in message and "resume" in message
    kept = (tmp_path / "run" / UNLOGGED_FILE).read_text().splitlines()
    losses = {(p["step"], p["value"]) for p in map(json.loads, kept) if p["key"] == "loss/train"}
    assert losses == {(1, 2.9), (2, 2.8), (3, 2.7)}


def test_a_refused_batch_is_reported_at_once_not_retried(workspace):
    from mlflow.exceptions import MlflowException

    from pipelines.tracking import MetricBuffer

    buffer = MetricBuffer("no-such-run")
    buffer.add({"loss/train": 3.0}, step=1)
    with pytest.raises(MlflowException):
        buffer.flush()
