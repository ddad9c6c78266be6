"""The tour flow: a real Prefect flow run that records a real MLflow run."""

from __future__ import annotations

import pydantic
import pytest
from mlflow.tracking import MlflowClient

from model import load_model, load_tokenizer
from pipelines.tour import TourConfig, tour_flow
from pipelines.workspace import mlflow_tracking_uri


def test_tour_learns_fits_samples_and_tracks(workspace, prefect_harness):
    config = TourConfig(steps=40, vocab_size=400, max_new_tokens=12)
    result = tour_flow(config)

    assert result.model_dir.is_relative_to(workspace)
    assert result.last_loss < result.first_loss  # the fit learned something
    assert len(result.samples) == len(config.prompts) and all(result.samples)
    # The checkpoint folder alone is enough to sample from.
    assert load_model(result.model_dir).config.vocab_size == 400
    assert load_tokenizer(result.model_dir).n_vocab == 400

    run = MlflowClient(mlflow_tracking_uri()).get_run(result.mlflow_run_id)
    assert run.data.params["steps"] == "40"
    assert len(run.data.tags["gpt2lab.lineage.tokenizer"]) == 64
    assert len(run.data.tags["gpt2lab.lineage.checkpoint"]) == 64
    assert run.data.tags["prefect.flow_name"] == "tour"
    history = MlflowClient(mlflow_tracking_uri()).get_metric_history(run.info.run_id, "loss/train")
    assert len(history) == 40


def test_tour_config_names_a_bad_preset():
    with pytest.raises(pydantic.ValidationError, match="unknown model preset 'huge'"):
        TourConfig(preset="huge")
