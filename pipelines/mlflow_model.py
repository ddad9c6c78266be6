"""A trained checkpoint as an MLflow model: logged with its run, registered under a name.

MLflow 3 keeps each logged model as an object of its own (a "LoggedModel", id `m-...`):
its page lists the run that made it, its tags (fingerprint, tokenizer, lineage) and every
metric linked to it, so evaluations logged later by other runs show up there too.

MLflow's model registry versions models and points aliases at versions (`latest`,
`best`), which is how the evaluate and preference flows, and people, ask for "the best
model of this recipe" without copying paths around. The model is an MLflow "pyfunc"
whose artifact is our checkpoint folder (weights, config, tokenizer); loaded with
`mlflow.pyfunc.load_model`, it continues prompts.

The pyfunc is logged as code (`mlflow_text_generator.py`), not as a pickled object:
loading a pickle runs whatever it holds, and a model registry is shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModelOutput, Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.tracking import package_version
from pipelines.workspace import mlflow_tracking_uri
from reports.mlflow_names import FINGERPRINT_TAG, lineage_tag
from tasks.fingerprint import fingerprint_path

MODEL_NAME = "model"  # the logged model's name inside its run


def log_checkpoint_model(
    checkpoint: Path, *, tags: Mapping[str, str] | None = None, step: int = 0
) -> str:
    """Log `checkpoint` as an MLflow logged model of the active run, tagged with `tags`
    (fingerprint, tokenizer, lineage); returns its model id."""
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(Path(__file__).with_name("mlflow_text_generator.py")),
        artifacts={"checkpoint": str(checkpoint)},
        # Stated, not inferred: inference inspects the environment and takes seconds.
        pip_requirements=[_requirement()],
        tags=dict(tags or {}),
        step=step,
    )
    return info.model_id


def model_tags(checkpoint: Path, lineage: Mapping[str, str]) -> dict[str, str]:
    """A saved model's logged-model tags: its fingerprint (how an evaluation of the folder
    finds the model) and its lineage (`gpt2lab.lineage.<input>`)."""
    return {
        FINGERPRINT_TAG: fingerprint_path(checkpoint),
        **{lineage_tag(name): fp for name, fp in lineage.items()},
    }


CHECKPOINT_MODEL_TYPE = "checkpoint"  # a run's intermediate checkpoints (see below)
CHECKPOINT_PATH_TAG = "gpt2lab.checkpoint"  # the folder an intermediate checkpoint is in
CHECKPOINT_STEP_TAG = "gpt2lab.step"


def log_checkpoint_reference(
    run_id: str, checkpoint: Path, step: int, tags: Mapping[str, str], name: str | None = None
) -> str:
    """Record an intermediate checkpoint of run `run_id` as an MLflow logged model that
    points at its folder; returns its model id.

    It is an "external" model: MLflow keeps its tags (fingerprint, step, folder, lineage)
    and the metrics linked to it, not its weights. A run writes a checkpoint every few
    hundred steps and keeps only the last few (`keep_last`); copying each into MLflow's
    artifact store would keep every one of them forever. The final checkpoint is logged
    with its weights (`log_checkpoint_model`), so it can be registered and loaded.
    Named `name`, default `step-NNNNNN`.
    """
    client = MlflowClient(mlflow_tracking_uri())
    experiment_id = client.get_run(run_id).info.experiment_id
    model = mlflow.create_external_model(
        name=name or f"step-{step:06d}",
        source_run_id=run_id,
        tags={**tags, CHECKPOINT_STEP_TAG: str(step), CHECKPOINT_PATH_TAG: str(checkpoint)},
        model_type=CHECKPOINT_MODEL_TYPE,
        experiment_id=experiment_id,
    )
    # An output of the run at its step, as `log_checkpoint_model` makes the final one: the
    # run's page lists its checkpoints together.
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step)])
    return model.model_id


def link_metric(run_id: str, key: str, step: int, model_id: str) -> bool:
    """Show run `run_id`'s point of metric `key` at `step` on logged model `model_id`'s
    page (e.g. the validation loss a checkpoint was saved with); False if there is none.

    The point is logged again with the model's id and its own timestamp: MLflow keeps one
    copy of a (key, value, step, time) point in the run, and adds it to the model's metrics.
    """
    client = MlflowClient(mlflow_tracking_uri())
    points = [m for m in client.get_metric_history(run_id, key) if m.step == step]
    if not points:
        return False
    point = points[-1]
    linked = Metric(point.key, point.value, point.timestamp, point.step, model_id=model_id)
    client.log_batch(run_id, metrics=[linked])
    return True


def register_logged_model(model_id: str, name: str, aliases: list[str]) -> ModelVersion:
    """Register logged model `model_id` as a new version of `name`; point `aliases` at it."""
    version = mlflow.register_model(f"models:/{model_id}", name)
    client = MlflowClient(mlflow_tracking_uri())
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def find_logged_model(fingerprint: str) -> str | None:
    """The id of the newest logged model whose checkpoint has `fingerprint`, if any: how an
    evaluation of a checkpoint folder finds the model its metrics belong to."""
    client = MlflowClient(mlflow_tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    try:
        found = client.search_logged_models(
            experiment_ids=experiments,
            filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
            max_results=1,
        )
    except MlflowException:  # a store without logged models (an old server): no link
        return None
    return found[0].model_id if found else None


def _requirement() -> str:
    version = package_version()
    return "gpt2lab" if version == "unknown" else f"gpt2lab=={version}"
