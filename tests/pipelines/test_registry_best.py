"""`best` compares like with like: validation losses measured on the same validation data.

A registered model name stands for one validation set (its fingerprint); a model validated
on other data goes to a name of its own, and never takes `best` from a version whose loss
was measured on something else."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipelines.train import name_for_data
from pipelines.workspace import mlflow_tracking_uri

from .test_evaluate_flow import tiny_model
from .test_model_refs import register_checkpoint

DATA_A, DATA_B = "a" * 64, "b" * 64


def test_best_moves_only_among_versions_validated_on_the_same_data(
    workspace, gpt2_vocab_dir, tmp_path
):
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    model = tiny_model(tmp_path / "m", gpt2_vocab_dir, seed=0)
    assert name_for_data("tiny", DATA_A) == "tiny"  # a new name takes any data
    assert register_checkpoint(model, "tiny", 2.0, DATA_A) == 1
    assert client.get_registered_model("tiny").tags["gpt2lab.val_data"] == DATA_A

    # Same data, lower loss: `best` moves. Same data, higher loss: it stays.
    assert register_checkpoint(model, "tiny", 1.0, DATA_A) == 2
    assert register_checkpoint(model, "tiny", 1.5, DATA_A) == 3
    assert client.get_model_version_by_alias("tiny", "best").version == 2
    assert name_for_data("tiny", DATA_A) == "tiny"

    # Other data: its own name, where it is `best`; and forced into the first name anyway,
    # a far lower loss on other data still does not take `best` there.
    other = name_for_data("tiny", DATA_B)
    assert other == "tiny-data-bbbbbbbb"
    assert register_checkpoint(model, other, 0.1, DATA_B) == 1
    assert client.get_model_version_by_alias(other, "best").version == 1
    assert register_checkpoint(model, "tiny", 0.1, DATA_B) == 4
    assert client.get_model_version_by_alias("tiny", "best").version == 2
