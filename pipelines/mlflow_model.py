"""A trained checkpoint as an MLflow model: logged with its run, registered under a name.

MLflow's model registry versions models and points aliases at versions (`latest`,
`best`), which is how the evaluate and preference flows, and people, ask for "the best
model of this recipe" without copying paths around. The model is an MLflow "pyfunc"
whose artifact is our checkpoint folder (weights, config, tokenizer); loaded with
`mlflow.pyfunc.load_model`, it continues prompts.

The pyfunc is logged as code (`mlflow_text_generator.py`), not as a pickled object:
loading a pickle runs whatever it holds, and a model registry is shared.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from pipelines.tracking import package_version

MODEL_NAME = "model"  # the logged model's name inside its run


def log_checkpoint_model(
    checkpoint: Path, registered_name: str | None, aliases: list[str]
) -> ModelVersion | None:
    """Log `checkpoint` as the active run's model; register it as a new version of
    `registered_name` and point `aliases` at that version. Returns the version."""
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(Path(__file__).with_name("mlflow_text_generator.py")),
        artifacts={"checkpoint": str(checkpoint)},
        # Stated, not inferred: inference inspects the environment and takes seconds.
        pip_requirements=[_requirement()],
        registered_model_name=registered_name,
    )
    if registered_name is None:
        return None
    client = MlflowClient()
    version = client.get_model_version(registered_name, str(info.registered_model_version))
    for alias in aliases:
        client.set_registered_model_alias(registered_name, alias, version.version)
    return version


def _requirement() -> str:
    version = package_version()
    return "gpt2lab" if version == "unknown" else f"gpt2lab=={version}"
