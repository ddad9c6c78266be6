"""The stylistic preference experiment at a small size, end to end: a start model trained
on made-up stories, votes cast by the scripted annotator through the real comparison page
(uvicorn on loopback), the tune flow, and a new batch judged the same way. The tuned
model must win, with the whole 95% interval above a coin flip, and every record must say
that a script, not people, voted."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines.stylistic import StylisticConfig, stylistic_flow
from pipelines.workspace import mlflow_tracking_uri
from reports.mlflow_names import JUDGE_TAG
from reports.stylistic_report import (
    ANNOTATOR_KIND_TAG,
    ANNOTATOR_TAG,
    REPORT_FILE,
    STYLISTIC_EXPERIMENT,
    curve_metric,
)
from tasks.preferences.scripted_annotator import SCRIPTED_VADER
from tasks.preferences.store import Annotator, Batch, Vote, open_database
from tasks.tuning.dpo_training import DPOSettings
from tasks.tuning.reward_training import RewardSettings

SMALL = StylisticConfig(
    comparisons=300,
    curve=[],
    judge_prompts=60,
    stories=300,
    start_steps=150,
    start_batch=16,
    start_context=64,
    max_new_tokens=16,
    reward=RewardSettings(learning_rate=1e-3, batch_size=16, eval_every=100),
    # A few hundred pairs: more passes over them (64 DPO steps) for a clear effect.
    dpo=DPOSettings(
        learning_rate=1e-3,
        beta=0.1,
        batch_size=8,
        epochs=4,
        eval_every=100,
        kl_prompts=8,
        kl_max_new_tokens=16,
    ),
)


@pytest.mark.slow
def test_the_tuned_model_beats_the_start_model_under_the_scripted_judge(
    workspace, prefect_harness, monkeypatch
):
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    result = stylistic_flow(SMALL)

    (point,) = result.points
    assert point.comparisons == 300 and point.judged >= 60
    assert point.low > 0.5, point  # the tuned model wins, beyond the noise of 60 judgements
    assert point.kl > 0

    # The votes came through the page, from the annotator named for the script.
    engine = open_database(SMALL.database_url())
    with Session(engine) as session:
        names = session.scalars(
            select(Annotator.name).join(Vote, Vote.annotator_id == Annotator.id).distinct()
        ).all()
        batches = session.scalars(select(Batch.name)).all()
    engine.dispose()
    assert names == [SCRIPTED_VADER] and len(batches) == 2  # comparisons, tuned vs start

    # MLflow says who voted, on the experiment's run and on the tune run.
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags[ANNOTATOR_TAG] == SCRIPTED_VADER
    assert run.data.tags[ANNOTATOR_KIND_TAG] == "scripted"
    assert run.data.metrics[curve_metric(300, "win_rate_low")] == pytest.approx(point.low)
    assert client.get_experiment(run.info.experiment_id).name == STYLISTIC_EXPERIMENT
    (tune_run,) = client.search_runs(
        [client.get_experiment_by_name("preference-tuning").experiment_id],
        filter_string="tags.mlflow.runName LIKE '%tuned-300'",
    )
    assert tune_run.data.tags[JUDGE_TAG] == SCRIPTED_VADER
    report = (result.folder / REPORT_FILE).read_text()
    assert "not people" in report and "0.86" in report
