"""Preference tuning reports its metrics in pretraining's scheme, so runs line up in MLflow."""

from __future__ import annotations

from reports import mlflow_names
from tasks.tuning.loop import TRAIN_LOSS, VAL_LOSS, measured_from, val_metrics


def test_the_losses_have_pretrainings_names_and_chart_together():
    # tasks/ may not import reports/: the loop repeats the strings, and they must agree.
    assert (TRAIN_LOSS, VAL_LOSS) == (mlflow_names.TRAIN_LOSS, mlflow_names.VAL_LOSS)
    assert TRAIN_LOSS.split("/")[0] == VAL_LOSS.split("/")[0] == "loss"


def test_a_held_out_measurement_is_reported_as_loss_val_and_val_names():
    measured = {"loss": 0.61, "accuracy": 0.75, "kl": 4.2}
    reported = val_metrics(measured)
    assert reported == {"loss/val": 0.61, "val/accuracy": 0.75, "val/kl": 4.2}
    # Read back from a report that also holds the step's training measures.
    step = {"loss/train": 0.7, "train/accuracy": 0.5, "epoch": 1.0, **reported}
    assert measured_from(step) == measured


def test_a_measurement_saved_under_the_old_names_is_still_found():
    # A progress folder written before the names changed, resumed right after its last
    # measurement, reads that measurement back.
    assert measured_from({"held_out/loss": 0.6, "held_out/kl": 0.1, "epoch": 2.0}) == {
        "loss": 0.6,
        "kl": 0.1,
    }
