"""The preference-tuning loop: a batch's human votes -> reward model and DPO -> a new
batch, tuned vs start, judged; tracked in MLflow with lineage to the batch it learned
from. Bad batches are refused by `gpt2lab tune` in one line."""

from __future__ import annotations

import re

import pytest
import torch
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from model import load_model
from model.reward import load_reward_model
from pipelines.cli import app
from pipelines.preferences import PreferencesConfig, make_batch, simulate_votes
from pipelines.tuning import TuningConfig, preference_tuning_flow
from tasks.fingerprint import fingerprint_path
from tasks.preferences.store import (
    Batch,
    Item,
    annotator_for,
    invite,
    open_database,
    record_vote,
)
from tasks.tuning.dpo_training import DPOSettings
from tasks.tuning.reward_training import RewardSettings

from .test_evaluate_flow import tiny_model

runner = CliRunner()


@pytest.fixture
def batch(workspace, tmp_path, gpt2_vocab_dir) -> PreferencesConfig:
    """Two tiny models compared on 8 prompts; nobody has voted yet."""
    models = [
        str(tiny_model(tmp_path / name, gpt2_vocab_dir, seed))
        for seed, name in enumerate(["base", "other"])
    ]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Entry {n} of the ship's log:\n" for n in range(8)))
    database = f"sqlite:///{tmp_path / 'votes.db'}"
    config = PreferencesConfig(
        models=models,
        prompts=prompts,
        batch="base-vs-other",
        max_new_tokens=12,
        repeat_fraction=0,
        gold_fraction=0,
        annotators=0,
        database=database,
    )
    make_batch.fn(config)
    return config


def people_vote(config: PreferencesConfig) -> None:
    """A person prefers the longer continuation of every pair (a rule a model can learn)."""
    engine = open_database(config.database_url())
    with Session(engine) as session, session.begin():
        batch = session.scalar(select(Batch).where(Batch.name == config.batch))
        person = annotator_for(session, invite(session, batch, "ana"))
        for item in session.scalars(select(Item).where(Item.batch_id == batch.id)):
            left_longer = len(item.left.text) >= len(item.right.text)
            record_vote(session, person, item.id, "left" if left_longer else "right")
    engine.dispose()


def small_tuning(config: PreferencesConfig, **fields) -> TuningConfig:
    return TuningConfig(
        batch=config.batch,
        database=config.database,
        held_out_fraction=0.25,
        reward=RewardSettings(batch_size=2, learning_rate=1e-3, eval_every=2),
        dpo=DPOSettings(
            batch_size=2, learning_rate=1e-4, eval_every=2, kl_prompts=2, kl_max_new_tokens=8
        ),
        compare="simulated",
        compare_n=4,
        **fields,
    )


def test_tuning_on_human_votes_opens_a_judged_batch_with_lineage(batch, prefect_harness):
    people_vote(batch)
    result = preference_tuning_flow(small_tuning(batch))
    assert result.comparisons == 8
    assert not result.reward_model.cached and not result.policy.cached

    # The models: a reward model with its head, and a policy that moved from the start.
    assert load_reward_model(result.reward_model.path).head.weight.shape == (1, 64)
    tuned, start = load_model(result.policy.path), load_model(batch.models[0])
    assert not torch.equal(
        tuned.transformer.h[0].mlp.c_fc.weight, start.transformer.h[0].mlp.c_fc.weight
    )
    assert 0 <= result.reward_model.held_out["accuracy"] <= 1
    assert result.policy.held_out["kl"] > 0

    # MLflow: the run's lineage leads back to the batch and its votes; a child run per model.
    client = MlflowClient()
    run = client.get_run(result.mlflow_run_id)
    tags = run.data.tags
    assert tags["gpt2lab.lineage.batch"] == "base-vs-other"
    assert len(tags["gpt2lab.lineage.votes"]) == 64 and tags["gpt2lab.judge"] == "people"
    assert {"gpt2lab.lineage.checkpoint.start", "gpt2lab.lineage.checkpoint.tuned"} <= set(tags)
    assert tags["gpt2lab.followup_batch"] == result.new_batch
    assert run.data.metrics["reward_model/accuracy"] == result.reward_model.held_out["accuracy"]
    assert {
        "dpo/kl",
        "dpo/margin",
        "sample_reward/start",
        "sample_reward/tuned",
        "followup/win_rate_tuned_simulated",
    } <= set(run.data.metrics)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    by_name = {child.info.run_name: child for child in children}
    assert set(by_name) == {"reward-model", "dpo"}
    # Each model's run: training and held-out losses as `loss/train` and `loss/val` in the
    # same run (as pretraining logs them), so MLflow's UI draws them in one chart.
    for child in by_name.values():
        names = set(child.data.metrics)
        assert {"loss/train", "loss/val", "train/accuracy", "val/accuracy", "epoch"} <= names
        assert not any(name.startswith(("held_out/", "train/loss")) for name in names)
    dpo_run = by_name["dpo"].info.run_id
    losses = client.get_metric_history(dpo_run, "loss/train")
    assert len(losses) == result.policy.steps >= 3
    val_losses = client.get_metric_history(dpo_run, "loss/val")
    assert val_losses[-1].step == result.policy.steps  # measured again at the end
    assert val_losses[-1].value == pytest.approx(result.policy.held_out["loss"])
    assert client.get_metric_history(dpo_run, "val/kl")
    epochs = client.get_metric_history(dpo_run, "epoch")
    assert epochs[0].value == 1 / len(losses) and epochs[-1].value == 1.0  # progress

    # Each trained model is a logged model of its run, tagged with its fingerprint and
    # lineage, its final held-out loss linked: the policy with its weights (loadable), the
    # reward model as a reference to its folder.
    for trained, child in ((result.policy, "dpo"), (result.reward_model, "reward-model")):
        model = client.get_logged_model(trained.model_id)
        assert model.source_run_id == by_name[child].info.run_id
        assert model.tags["gpt2lab.fingerprint"] == fingerprint_path(trained.path)
        assert (
            model.tags["gpt2lab.lineage.checkpoint.start"]
            == tags["gpt2lab.lineage.checkpoint.start"]
        )
        linked = {m.key: m.value for m in model.metrics}
        assert linked["loss/val"] == pytest.approx(trained.held_out["loss"])
    policy_model = client.get_logged_model(result.policy.model_id)
    assert policy_model.name == "model" and policy_model.tags["gpt2lab.lineage.tokenizer"]
    assert client.get_logged_model(result.reward_model.model_id).model_type == "checkpoint"

    # The new batch: tuned vs start on the batch's prompts, judged (here, by the script).
    engine = open_database(batch.database_url())
    with Session(engine) as session:
        new = session.scalar(select(Batch).where(Batch.name == result.new_batch))
        assert new.models == [str(result.policy.path), batch.models[0]]
    engine.dispose()
    assert result.win_rate is not None and 0 <= result.win_rate <= 1
    summary = (result.folder / "summary.md").read_text()
    assert "Preference tuning" in summary
    # 8 comparisons are far too few to learn from, and the summary says so.
    assert "**Warning:** only" in summary and "comparisons to train on" in summary

    # The same run again: both models are found, not trained again.
    again = preference_tuning_flow(small_tuning(batch))
    assert again.folder == result.folder
    assert again.reward_model.cached and again.policy.cached
    assert again.new_batch == result.new_batch


def test_too_few_comparisons_get_a_warning_and_enough_get_none():
    from pipelines.tuning import MIN_USEFUL_COMPARISONS, VotesSummary, too_few_comparisons

    def votes(train: int) -> VotesSummary:
        return VotesSummary(
            judge="people", votes=train, comparisons=train, train=train, held_out=0,
            fingerprint="f", models=["a", "b"], prompts=["p"],
        )  # fmt: skip

    assert "only 2 comparisons to train on" in too_few_comparisons(votes(2))
    assert too_few_comparisons(votes(MIN_USEFUL_COMPARISONS)) is None


def test_tune_refuses_a_batch_without_votes(batch):
    result = runner.invoke(app, ["tune", "--from-batch", batch.batch, "--database", batch.database])
    assert result.exit_code == 2
    assert "'base-vs-other' has no votes on its comparisons yet" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tune_wants_the_switch_for_simulated_votes(batch, prefect_harness, tmp_path):
    simulate_votes.fn(batch, batch.batch)
    args = ["tune", "--from-batch", batch.batch, "--database", batch.database]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--allow-simulated" in refused.output
    assert "only simulated votes (8)" in refused.output

    settings = tmp_path / "tuning.toml"
    settings.write_text(
        "held_out_fraction = 0.25\ncompare = 'people'\nannotators = 1\n"
        "[reward]\nbatch_size = 4\n[dpo]\nbatch_size = 4\nkl_prompts = 2\n"
        "kl_max_new_tokens = 4\n"
    )
    allowed = runner.invoke(app, [*args, "--allow-simulated", "--config", str(settings)])
    assert allowed.exit_code == 0, allowed.output
    assert "8 simulated comparisons" in allowed.output
    assert "tuned vs start; invite links" in allowed.output
    assert len(re.findall(r"http://127\.0\.0\.1:8765/join/[\w-]+", allowed.output)) == 1
