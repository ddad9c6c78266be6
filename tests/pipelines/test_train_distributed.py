"""DDP on the CPU: 2 processes (gloo) follow the same loss curve as 1 with the same batch."""

from __future__ import annotations

import json
import subprocess

from pipelines.train import RESULT_FILE, TrainConfig, torchrun_command
from tasks.train.loop import train
from tests.pipelines.distributed_helpers import assert_same_losses, small_config


def _run_on_two_processes(config: TrainConfig, tmp_path) -> subprocess.CompletedProcess:
    """The worker under torchrun, as the flow starts it, without MLflow."""
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json())
    command = torchrun_command(config_file, config.run_dir(), devices=2)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_two_processes_match_one_with_the_same_global_batch(tokens_dir, tmp_path):
    single = train(small_config(tokens_dir, None).loop_settings(), tmp_path / "single")

    done = _run_on_two_processes(small_config(tokens_dir, tmp_path / "ddp"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / RESULT_FILE).read_text())

    assert_same_losses(single, ddp)
    # Rank 0 alone wrote the checkpoints: one set, as a single process would.
    folders = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir())
    assert folders == ["best", "step-000006", "step-000012"]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tokens_dir, tmp_path):
    config = small_config(tokens_dir, tmp_path / "ddp").model_copy(update={"batch_tokens": 256})
    done = _run_on_two_processes(config, tmp_path)
    assert done.returncode != 0
    assert "batch_tokens (256) must be a multiple of micro_batch x context x processes" in (
        done.stderr
    )
    assert not (tmp_path / "ddp" / "checkpoints").exists()


def test_the_flow_trains_on_two_processes_and_rank_0_logs(
    workspace, prefect_harness, tokens_dir, tmp_path
):
    from mlflow.tracking import MlflowClient

    from pipelines.train import run_train
    from pipelines.workspace import mlflow_tracking_uri

    config = small_config(tokens_dir, tmp_path / "run").model_copy(
        update={"devices": 2, "max_steps": 6, "log_every": 2, "register_as": "ddp-test"}
    )
    result = run_train(config)
    assert result.steps == 6 and result.model_version == 1
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    history = client.get_metric_history(result.mlflow_run_id, "loss/train")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]  # once each: only rank 0 logs
    charts = {a.path for a in client.list_artifacts(result.mlflow_run_id, "charts")}
    assert charts == {"charts/loss.png"}
