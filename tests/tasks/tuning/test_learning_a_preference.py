"""On a preference with a clear signal, both learners find it: the reward model ranks
held-out comparisons right, and DPO makes the model mention the marker more often while
staying close to where it started."""

from __future__ import annotations

import pytest

from tasks.tuning.comparisons import Comparison, split_by_prompt
from tasks.tuning.dpo_training import DPOSettings, train_dpo
from tasks.tuning.reward_training import RewardSettings, train_reward_model
from tests.tasks.tuning.conftest import marker_comparisons, marker_frequency


@pytest.fixture(scope="module")
def split(ship_log):
    comparisons = marker_comparisons(ship_log)
    assert len(comparisons) >= 30  # enough signal to learn from (about 46 with seed 0)
    return split_by_prompt(comparisons, 0.25, seed=0)


def test_reward_model_learns_the_marker_from_best_of_4_comparisons(ship_log, split):
    assert {len(c.samples) for c in split.train} == {4}  # the softmax loss over four
    seen = []
    result = train_reward_model(
        ship_log.model,
        ship_log.tokenizer,
        split,
        RewardSettings(epochs=4, batch_size=4, learning_rate=1e-3, eval_every=5),
        on_metrics=lambda step, metrics: seen.append((step, metrics)),
    )
    assert result.held_out["pairs"] == 3 * len(split.held_out)  # chosen vs each of 3 others
    assert result.held_out["accuracy"] >= 0.9, result.held_out
    assert any("val/accuracy" in m for _, m in seen[:-1])  # measured along the way
    assert seen[-1][0] == result.steps


def test_reward_model_learns_the_marker_from_pairs(ship_log, split):
    """The same comparisons cut into (chosen, rejected) pairs: the Bradley-Terry loss."""

    def as_pairs(comparisons):
        return [
            Comparison(c.prompt, (chosen, rejected), 0)
            for c in comparisons
            for chosen, rejected in c.pairs()
        ]

    pairs = type(split)(train=as_pairs(split.train), held_out=as_pairs(split.held_out))
    settings = RewardSettings(epochs=2, batch_size=8, learning_rate=1e-3)
    result = train_reward_model(ship_log.model, ship_log.tokenizer, pairs, settings)
    assert result.held_out["accuracy"] >= 0.9, result.held_out


def test_dpo_raises_the_markers_frequency_with_bounded_kl(ship_log, split):
    before = marker_frequency(ship_log.model, ship_log.tokenizer, seed=100)
    settings = DPOSettings(beta=1.0, epochs=4, batch_size=8, learning_rate=1e-4, eval_every=10)
    result = train_dpo(ship_log.model, ship_log.tokenizer, split, settings)
    after = marker_frequency(result.policy, ship_log.tokenizer, seed=100)

    assert after >= max(2 * before, before + 0.2), (before, after)  # about 0.11 -> 0.6
    held_out = result.held_out
    assert held_out["accuracy"] >= 0.8 and held_out["margin"] > 0, held_out
    assert held_out["loss"] < 0.6931  # below log 2: better than the reference's coin flip
    # KL to the start model, nats per 32-token sample: about 5, i.e. ~0.17 per token.
    assert 0 < held_out["kl"] < 10, held_out
    first_kl = next(m["val/kl"] for _, m in result.history if "val/kl" in m)
    assert first_kl < held_out["kl"]  # the policy moved away as it learned

    # The starting model is untouched: DPO tuned a copy, against a frozen copy.
    assert marker_frequency(ship_log.model, ship_log.tokenizer, seed=100) == before


def test_a_larger_beta_keeps_the_policy_closer(ship_log, split):
    """beta is the pull back to the reference: the same training with a weaker pull
    drifts further."""
    common = dict(epochs=2, batch_size=8, learning_rate=1e-4, eval_every=1000)
    strong = train_dpo(ship_log.model, ship_log.tokenizer, split, DPOSettings(beta=1.0, **common))
    weak = train_dpo(ship_log.model, ship_log.tokenizer, split, DPOSettings(beta=0.05, **common))
    assert strong.held_out["kl"] < weak.held_out["kl"], (strong.held_out, weak.held_out)
