"""Training stopped half-way goes on from its saved progress and ends where an
uninterrupted run ends, weights and metrics alike."""

from __future__ import annotations

import pytest
import torch

from tasks.tuning.comparisons import split_by_prompt
from tasks.tuning.dpo_training import DPOSettings, train_dpo
from tasks.tuning.loop import ProgressError
from tasks.tuning.reward_training import RewardSettings, train_reward_model
from tests.tasks.tuning.conftest import marker_comparisons


class Stop(Exception):
    """Stands in for a crash or Ctrl-C in the middle of training."""


def stop_at(step: int):
    def on_metrics(at: int, metrics: dict) -> None:
        if at == step and "loss/train" in metrics:
            raise Stop

    return on_metrics


@pytest.fixture(scope="module")
def split(ship_log):
    return split_by_prompt(marker_comparisons(ship_log), 0.25, seed=0)


@pytest.fixture
def optimizer_steps(monkeypatch) -> list[int]:
    """Counts AdamW steps: a resumed run must take only the steps that were left."""
    taken: list[int] = []
    original = torch.optim.AdamW.step

    def counted(self, *args, **kwargs):
        taken.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    return taken


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_dpo_resumes_from_its_progress_folder(ship_log, split, tmp_path, optimizer_steps):
    settings = DPOSettings(
        epochs=2,
        batch_size=8,
        learning_rate=1e-4,
        eval_every=4,
        checkpoint_every=5,
        kl_prompts=4,
        kl_max_new_tokens=8,
    )
    whole = train_dpo(ship_log.model, ship_log.tokenizer, split, settings)
    assert whole.steps > 15  # two epochs of 13 steps: the stop below falls in the second

    progress = tmp_path / "policy.progress"
    with pytest.raises(Stop):
        train_dpo(
            ship_log.model,
            ship_log.tokenizer,
            split,
            settings,
            on_metrics=stop_at(17),
            progress=progress,
        )
    assert (progress / "loop_state.pt").is_file()  # saved at step 15, before the stop

    replayed: list[int] = []
    optimizer_steps.clear()
    resumed = train_dpo(
        ship_log.model,
        ship_log.tokenizer,
        split,
        settings,
        progress=progress,
        on_metrics=lambda step, _: replayed.append(step),
    )
    assert resumed.steps == whole.steps and len(optimizer_steps) == whole.steps - 15
    assert same_weights(resumed.policy, whole.policy)
    assert resumed.history == whole.history  # the steps before the stop are shown again
    assert replayed == [step for step, _ in whole.history]
    assert resumed.held_out == whole.held_out


def test_the_reward_model_resumes_too(ship_log, split, tmp_path, optimizer_steps):
    settings = RewardSettings(epochs=2, batch_size=4, learning_rate=1e-3, checkpoint_every=4)
    whole = train_reward_model(ship_log.model, ship_log.tokenizer, split, settings)
    progress = tmp_path / "reward-model.progress"
    with pytest.raises(Stop):
        train_reward_model(
            ship_log.model,
            ship_log.tokenizer,
            split,
            settings,
            on_metrics=stop_at(10),
            progress=progress,
        )
    optimizer_steps.clear()
    resumed = train_reward_model(
        ship_log.model, ship_log.tokenizer, split, settings, progress=progress
    )
    assert len(optimizer_steps) == whole.steps - 8  # saved at step 8, stopped at 10
    assert same_weights(resumed.model, whole.model)
    assert resumed.held_out == whole.held_out


def test_progress_of_other_settings_is_refused(ship_log, split, tmp_path):
    progress = tmp_path / "policy.progress"
    settings = DPOSettings(batch_size=8, checkpoint_every=2, kl_prompts=2, kl_max_new_tokens=4)
    with pytest.raises(Stop):
        train_dpo(
            ship_log.model,
            ship_log.tokenizer,
            split,
            settings,
            on_metrics=stop_at(3),
            progress=progress,
        )
    other = settings.model_copy(update={"beta": 0.5})
    with pytest.raises(
        ProgressError, match="policy.progress: saved progress of a run with other settings"
    ):
        train_dpo(ship_log.model, ship_log.tokenizer, split, other, progress=progress)
