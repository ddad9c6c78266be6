"""tracked_run and log_metrics_batch against a real MLflow SQLite store in a test workspace."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import mlflow
import pydantic
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.tracking import (
    ensure_experiment,
    flatten_params,
    git_commit,
    log_metrics_batch,
    stage_runs,
    tracked_run,
)
from pipelines.workspace import mlflow_tracking_uri

LINEAGE = {"corpus": "c" * 64, "tokenizer": "t" * 64}


def _client() -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_tracking_uri())


def test_run_has_lineage_code_tags_and_params(workspace: Path) -> None:
    params = {"n_layer": 2, "optim": {"lr": 3e-4, "betas": (0.9, 0.95)}, "data": Path("/d")}
    with tracked_run("train", "tiny", lineage=LINEAGE, params=params, tags={"extra": "x"}) as run:
        run_id = run.info.run_id

    stored = _client().get_run(run_id)
    tags = stored.data.tags
    assert tags["gpt2lab.lineage.corpus"] == LINEAGE["corpus"]
    assert tags["gpt2lab.lineage.tokenizer"] == LINEAGE["tokenizer"]
    assert tags["gpt2lab.git_commit"] == git_commit()
    assert tags["gpt2lab.version"] == tracking.package_version()
    assert tags["extra"] == "x"
    assert tags["mlflow.runName"] == "tiny"
    # Outside a Prefect flow run there is no flow-run tag at all (not an empty one).
    assert "prefect.flow_run_id" not in tags
    assert stored.data.params == {
        "n_layer": "2",
        "optim.lr": "0.0003",
        "optim.betas": "(0.9, 0.95)",
        "data": "/d",
    }
    assert stored.info.status == "FINISHED"


def test_store_and_artifacts_live_in_the_workspace(workspace: Path) -> None:
    with tracked_run("corpus/v1 test") as run:
        mlflow.log_text("kept 3, dropped 1", "funnel.txt")
        run_id = run.info.run_id

    assert mlflow.get_tracking_uri() == f"sqlite:///{workspace.resolve()}/mlflow.db"
    experiment = _client().get_experiment_by_name("corpus/v1 test")
    assert experiment.artifact_location == (workspace / "mlartifacts" / "corpus_v1_test").as_uri()
    artifact_uri = _client().get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith((workspace / "mlartifacts").as_uri() + "/")
    written = list((workspace / "mlartifacts").rglob("funnel.txt"))
    assert len(written) == 1 and written[0].read_text() == "kept 3, dropped 1"


def test_metrics_in_one_batch_from_mapping_and_triples(workspace: Path) -> None:
    with tracked_run("train") as run:
        # 2,500 points: more than MLflow's 1,000-per-batch limit, split by the client.
        log_metrics_batch(run, [("loss", 10.0 / (s + 1), s) for s in range(2500)])
        log_metrics_batch(None, {"bleu": 12.5, "rouge_l": 0.3}, step=7)  # the active run
        log_metrics_batch(run.info.run_id, {"ppl": 30})
        run_id = run.info.run_id

    client = _client()
    history = client.get_metric_history(run_id, "loss")
    assert len(history) == 2500
    assert {m.step for m in history} == set(range(2500))
    assert client.get_metric_history(run_id, "bleu")[0].step == 7
    stored = client.get_run(run_id).data.metrics
    assert stored["rouge_l"] == pytest.approx(0.3)
    assert stored["ppl"] == 30.0


def test_log_metrics_batch_without_any_run_fails_clearly(workspace: Path) -> None:
    with pytest.raises(RuntimeError, match="no MLflow run is active"):
        log_metrics_batch(None, {"x": 1.0})


def test_nested_runs_under_a_parent(workspace: Path) -> None:
    with tracked_run("end-to-end", "parent", lineage=LINEAGE) as parent:
        with tracked_run("end-to-end", "stage-1", nested=True) as child:
            child_id = child.info.run_id

        # A child started from another thread (as a Prefect task would) names its parent.
        other_thread: dict[str, str] = {}

        def stage_in_thread() -> None:
            with tracked_run("end-to-end", "stage-2", parent_run_id=parent.info.run_id) as run:
                other_thread["id"] = run.info.run_id

        worker = threading.Thread(target=stage_in_thread)
        worker.start()
        worker.join()
        parent_id = parent.info.run_id

    client = _client()
    for run_id in (child_id, other_thread["id"]):
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent_id
    assert "mlflow.parentRunId" not in client.get_run(parent_id).data.tags


def test_a_flows_runs_join_the_end_to_end_run_of_its_stage(workspace: Path) -> None:
    with tracked_run("end-to-end", "e2e") as parent:
        parent_id = parent.info.run_id
    with stage_runs("end-to-end", parent_id, "evaluate"):
        # What the evaluate flow does, unchanged: a run, and runs nested under it.
        with tracked_run("evaluate", "eval") as stage:
            stage_id = stage.info.run_id
        with tracked_run("evaluate", "one task", parent_run_id=stage_id) as task:
            task_id = task.info.run_id
    with tracked_run("evaluate", "on its own") as alone:
        alone_id = alone.info.run_id

    client = _client()
    e2e = client.get_experiment_by_name("end-to-end").experiment_id
    stage_run, task_run = client.get_run(stage_id), client.get_run(task_id)
    assert stage_run.info.experiment_id == task_run.info.experiment_id == e2e
    assert stage_run.data.tags["mlflow.parentRunId"] == parent_id
    assert stage_run.data.tags["gpt2lab.stage"] == "evaluate"
    assert task_run.data.tags["mlflow.parentRunId"] == stage_id
    assert "gpt2lab.stage" not in task_run.data.tags
    # The stage's run is named after the stage (whatever the flow called it); its own
    # children keep their names.
    assert stage_run.info.run_name == "evaluate" and task_run.info.run_name == "one task"
    outside = client.get_run(alone_id)  # after the block: back to the flow's own experiment
    assert outside.info.experiment_id == client.get_experiment_by_name("evaluate").experiment_id
    assert "mlflow.parentRunId" not in outside.data.tags


def test_a_failing_block_marks_the_run_failed(workspace: Path) -> None:
    with pytest.raises(ValueError), tracked_run("train") as run:
        run_id = run.info.run_id
        raise ValueError("boom")
    assert _client().get_run(run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_deleted_experiment_is_restored(workspace: Path) -> None:
    experiment_id = ensure_experiment("evaluate")
    _client().delete_experiment(experiment_id)
    assert ensure_experiment("evaluate") == experiment_id
    assert _client().get_experiment(experiment_id).lifecycle_stage == "active"


def test_user_tracking_uri_is_used(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.db"
    other.write_bytes((workspace / "mlflow.db").read_bytes())  # an already-migrated store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other}")
    with tracked_run("train") as run:
        run_id = run.info.run_id
    assert MlflowClient(f"sqlite:///{other}").get_run(run_id)
    # Not the workspace store, so the server/store default decides where artifacts go.
    experiment = MlflowClient(f"sqlite:///{other}").get_experiment_by_name("train")
    assert "mlartifacts" not in experiment.artifact_location


class TrainConfig(pydantic.BaseModel):
    out_dir: Path = Path("/ckpt")
    optim: dict[str, float] = {"lr": 0.001}


def test_pydantic_config_as_params(workspace: Path) -> None:
    with tracked_run("train", params=TrainConfig()) as run:
        run_id = run.info.run_id
    assert _client().get_run(run_id).data.params == {"out_dir": "/ckpt", "optim.lr": "0.001"}


def test_compared_settings_are_the_params_and_config_json_has_all(
    workspace: Path, tmp_path: Path
) -> None:
    settings = {"model": "tiny", "optim": {"lr": 3e-4, "eps": 1e-8}, "log_every": 10}
    with tracked_run("train", params=settings, compared=("model", "optim.lr")) as run:
        run_id = run.info.run_id
    assert _client().get_run(run_id).data.params == {"model": "tiny", "optim.lr": "0.0003"}
    logged = _client().download_artifacts(run_id, tracking.CONFIG_ARTIFACT, str(tmp_path))
    assert json.loads(Path(logged).read_text()) == settings

    # A compared setting the config lacks (renamed since) is said, not silently dropped.
    renamed = ("model", "optim.betas")
    with (
        pytest.raises(KeyError, match="optim.betas"),
        tracked_run("t", params=settings, compared=renamed),
    ):
        pass


def test_flatten_params() -> None:
    assert flatten_params({"a": {"b": {"c": 1}}, "d": None}) == {"a.b.c": "1", "d": "None"}


# --- git commit tag --------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding a committed package folder `pkg/`."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("venv/\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


# git_commit is cached per process; __wrapped__ is the uncached function.
uncached_git_commit = git_commit.__wrapped__


def test_git_commit_clean_then_dirty(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD").strip()
    assert uncached_git_commit(checkout, ("pkg",)) == head
    (checkout / "README.md").write_text("prose is not code\n")  # outside the packages
    assert uncached_git_commit(checkout, ("pkg",)) == head
    (checkout / "pkg" / "__init__.py").write_text("x = 2\n")
    assert uncached_git_commit(checkout, ("pkg",)) == f"{head}-dirty"
    (checkout / "pkg" / "__init__.py").write_text("x = 1\n")
    (checkout / "pkg" / "new_task.py").write_text("")  # untracked code counts too
    assert uncached_git_commit(checkout, ("pkg",)) == f"{head}-dirty"


def test_git_commit_unknown_outside_a_checkout(tmp_path: Path, checkout: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert uncached_git_commit(plain, ("pkg",)) == "unknown"
    # A package installed into an ignored folder of some checkout is not that checkout's code.
    site_packages = checkout / "venv" / "site-packages"
    (site_packages / "pkg").mkdir(parents=True)
    (site_packages / "pkg" / "__init__.py").write_text("")
    assert uncached_git_commit(site_packages, ("pkg",)) == "unknown"


def test_git_commit_unknown_without_git(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert uncached_git_commit(checkout, ("pkg",)) == "unknown"


def test_git_commit_gives_up_on_a_hanging_git(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_git = fake_bin / "git"
    fake_git.write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    fake_git.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))
    monkeypatch.setattr(tracking, "_GIT_TIMEOUT_S", 0.2)
    assert uncached_git_commit(checkout, ("pkg",)) == "unknown"


def test_runs_are_named_described_and_experiments_open_in_the_training_view(
    workspace: Path,
) -> None:
    with tracked_run("corpus") as run:
        tracking.describe(run.info.run_id, "**Corpus**: 3 documents")
    stored = _client().get_run(run.info.run_id)
    assert stored.info.run_name == "corpus"  # not one of MLflow's random names
    assert stored.data.tags["mlflow.note.content"] == "**Corpus**: 3 documents"
    experiment = _client().get_experiment(stored.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_experiment_made_without_the_view_tag_gets_it(workspace: Path) -> None:
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    made = _client().create_experiment("older")
    assert ensure_experiment("older") == made
    assert (
        _client().get_experiment(made).tags["mlflow.experimentKind"] == "custom_model_development"
    )


def test_datasets_and_metrics_linked_to_them_and_to_a_model(
    workspace: Path, tmp_path: Path
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a"}\n')
    with tracked_run("evaluate", "task") as run:
        dataset = tracking.log_dataset(run.info.run_id, "rows", data, "d" * 64, "evaluation")
        model = mlflow.create_external_model(name="m", source_run_id=run.info.run_id)
        log_metrics_batch(run, {"bleu": 12.5}, model_id=model.model_id, dataset=dataset)
    (found,) = _client().get_run(run.info.run_id).inputs.dataset_inputs
    assert (found.dataset.name, found.dataset.digest) == ("rows", "d" * 32)
    assert data.resolve().as_uri() in found.dataset.source
    assert {t.key: t.value for t in found.tags}["mlflow.data.context"] == "evaluation"
    (linked,) = _client().get_logged_model(model.model_id).metrics
    assert (linked.key, linked.value, linked.dataset_name) == ("bleu", 12.5, "rows")
