"""The training loop: it learns, resumes exactly, stops safely, refuses the impossible."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model import GPT, load_model
from tasks.train.checkpoints import BEST, STATE_FILE, TrainingError, latest_checkpoint
from tasks.train.loop import Callbacks, StepMetrics, train
from tasks.train.schedule import learning_rate
from tasks.train.settings import TrainSettings
from tests.tasks.train.conftest import VOCAB


def settings(tokens_dir: Path, **changes) -> TrainSettings:
    """The tiny preset on short windows: a step takes milliseconds on a CPU."""
    values = dict(
        tokens=tokens_dir,
        model="tiny",
        context=64,
        micro_batch=4,
        batch_tokens=512,
        max_steps=12,
        warmup_steps=3,
        learning_rate=3e-3,
        min_learning_rate=3e-4,
        eval_interval=4,
        eval_batches=2,
        checkpoint_interval=5,
        keep_last=2,
        dropout=0.1,
    )
    values.update(changes)
    return TrainSettings(**values)


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    s = TrainSettings(
        tokens=Path("t"), max_steps=100, warmup_steps=10, learning_rate=1.0, min_learning_rate=0.1
    )
    rates = [learning_rate(step, s) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))  # never rises
    assert learning_rate(100, s) == pytest.approx(0.1)


def test_a_resumed_run_repeats_the_uninterrupted_losses(tokens_dir, tmp_path):
    # Dropout on and gradient accumulation over 2 passes: every random draw counts.
    whole = train(settings(tokens_dir), tmp_path / "whole")

    def crash_after_step_7(step: int, metrics: StepMetrics) -> None:
        if step == 7:
            raise KeyboardInterrupt  # dies between checkpoints (the last one is step 5)

    with pytest.raises(KeyboardInterrupt):
        train(settings(tokens_dir), tmp_path / "broken", Callbacks(on_step=crash_after_step_7))
    resumed = train(settings(tokens_dir), tmp_path / "broken")

    assert resumed.resumed_from == 5
    assert resumed.train_losses == whole.train_losses[5:]  # exactly, step 6 to 12
    assert resumed.val_loss == whole.val_loss
    final = {k: v for k, v in load_model(whole.last_checkpoint).state_dict().items()}
    again = load_model(resumed.last_checkpoint).state_dict()
    assert all(torch.equal(final[name], again[name]) for name in final)


def test_pretraining_drives_validation_loss_well_below_uniform(tokens_dir, tmp_path):
    evaluations = []
    result = train(
        settings(
            tokens_dir,
            max_steps=200,
            warmup_steps=20,
            learning_rate=1e-2,
            min_learning_rate=1e-3,
            micro_batch=8,
            batch_tokens=1024,
            eval_interval=50,
            eval_batches=4,
            checkpoint_interval=200,
            dropout=0.0,
        ),
        tmp_path / "run",
        Callbacks(on_eval=lambda step, val_loss, model: evaluations.append(val_loss)),
    )
    uniform = math.log(VOCAB)  # 6.24: a model that knows nothing
    # 1.5 nats below: a perplexity under a quarter of the uniform guess's 512.
    assert result.val_loss < uniform - 1.5, (evaluations, uniform)
    assert evaluations == sorted(evaluations, reverse=True)  # it kept improving
    assert result.best_val_loss == min(evaluations)


def test_checkpoints_keep_the_last_k_and_the_best(tokens_dir, tmp_path):
    result = train(settings(tokens_dir, max_steps=16, checkpoint_interval=3), tmp_path / "run")
    folders = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert folders == [BEST, "step-000015", "step-000016"]
    assert result.last_checkpoint == tmp_path / "run" / "checkpoints" / "step-000016"
    # Each checkpoint is also a model folder: it loads and holds its tokenizer.
    model = load_model(result.best_checkpoint)
    assert model.config.vocab_size == VOCAB
    assert (result.best_checkpoint / "encoder.json").is_file()
    assert (result.best_checkpoint / STATE_FILE).is_file()


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tokens_dir, tmp_path, monkeypatch
):
    real_forward = GPT.forward
    calls = {"n": 0}

    def forward_going_bad(self, *args, **kwargs):
        logits, loss = real_forward(self, *args, **kwargs)
        calls["n"] += self.training  # evaluation passes do not count
        if self.training and calls["n"] > 14:  # 2 passes a step: step 8 goes bad
            loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward_going_bad)
    with pytest.raises(TrainingError, match=r"loss became nan at step 8.*step-000005"):
        train(settings(tokens_dir), tmp_path / "run")
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-000005"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"context": 512}, r"context 512 is longer than the model's \(256 positions\)"),
        ({"batch_tokens": 1000}, r"batch_tokens \(1000\) must be a multiple of .* = 256\)"),
        ({"tokens": Path("/nonexistent/tokens")}, "not a finished tokens folder"),
    ],
)
def test_impossible_settings_fail_before_any_work(tokens_dir, tmp_path, changes, message):
    with pytest.raises(TrainingError, match=message):
        train(settings(tokens_dir, **changes), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resuming_with_other_settings_is_refused(tokens_dir, tmp_path):
    train(settings(tokens_dir, max_steps=5), tmp_path / "run")
    with pytest.raises(TrainingError, match=r"learning_rate=0.003, not 0.001"):
        train(settings(tokens_dir, learning_rate=1e-3), tmp_path / "run")
    # Only what does not change the computation may differ: more steps continue the run.
    longer = train(settings(tokens_dir, max_steps=7), tmp_path / "run")
    assert longer.resumed_from == 5 and longer.steps == 7


def test_fine_tuning_starts_from_a_hugging_face_folder(tokens_dir, tmp_path):
    from model import GPTConfig, export_hf_folder

    torch.manual_seed(0)
    start = GPT(GPTConfig.preset("tiny", vocab_size=VOCAB))
    export_hf_folder(start, tmp_path / "hf")  # config.json + model.safetensors, HF names
    result = train(
        settings(tokens_dir, init_from=str(tmp_path / "hf"), max_steps=3, dropout=0.0),
        tmp_path / "run",
    )
    tuned = load_model(result.last_checkpoint)
    assert tuned.config.n_layer == start.config.n_layer and result.steps == 3
    # It started from those weights: one small step away, not a fresh initialisation.
    before, after = start.state_dict(), tuned.state_dict()
    drift = max((after[k] - before[k]).abs().max().item() for k in before)
    assert 0 < drift < 0.05
