"""Reward model and DPO: the losses match their formulas, rewards and log-probabilities are
read from the right tokens of right-padded rows, and a saved reward model comes back whole."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from model import GPT, CheckpointError, GPTConfig, load_tokenizer, save_checkpoint
from model.dpo import dpo_loss, sequence_kl, sequence_log_probs
from model.reward import (
    HEAD_FILE,
    RewardModel,
    choice_loss,
    load_reward_model,
    pairwise_accuracy,
    save_reward_model,
)
from tasks.tuning.sequences import pad_right

VOCAB = 97
TINY = GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=32)

# (ids, prompt length) rows of different lengths, for the padded-batch tests.
ROWS = [
    ([5, 17, 3, 88, 41, 9, 60], 3),
    ([12, 7, 30, 2], 2),
    ([44, 1, 96, 23, 70, 15, 8, 33, 51, 27], 4),
]


def _gpt(seed: int = 0, config: GPTConfig = TINY) -> GPT:
    torch.manual_seed(seed)
    return GPT(config).eval()


def _reward_model(seed: int = 0, config: GPTConfig = TINY) -> RewardModel:
    model = RewardModel(_gpt(seed, config)).eval()
    with torch.no_grad():
        model.head.bias.fill_(0.25)  # non-zero, so a bias that is lost would show
    return model


# --- choice_loss and pairwise_accuracy -------------------------------------------------


def test_choice_loss_of_two_samples_is_the_bradley_terry_loss():
    """With two samples the loss is -log sigmoid(r_chosen - r_rejected), whichever slot the
    chosen one sits in, and only reward differences matter."""
    torch.manual_seed(1)
    rewards = torch.randn(8, 2) * 2
    best = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    chosen = rewards[torch.arange(8), best]
    rejected = rewards[torch.arange(8), 1 - best]
    expected = torch.log1p(torch.exp(-(chosen - rejected))).mean()  # -log sigmoid(d)

    torch.testing.assert_close(choice_loss(rewards, best), expected)
    torch.testing.assert_close(choice_loss(rewards + 7.5, best), expected)
    # The wrong pick costs more: the loss depends on which sample was chosen.
    assert not torch.allclose(choice_loss(rewards, 1 - best), expected)


def test_choice_loss_of_four_samples_is_the_best_of_four_softmax_loss():
    torch.manual_seed(2)
    rewards = torch.randn(5, 4) * 3
    best = torch.tensor([3, 0, 2, 1, 2])
    per_row = [
        -(rewards[b, best[b]].item() - math.log(sum(math.exp(r) for r in rewards[b].tolist())))
        for b in range(5)
    ]
    torch.testing.assert_close(
        choice_loss(rewards, best), torch.tensor(sum(per_row) / 5), rtol=1e-5, atol=1e-6
    )


def test_pairwise_accuracy_counts_pairs_ranked_strictly_right():
    """Row 0: the chosen beats all three others. Row 1: it beats one, loses to one and ties
    one (a tie is not right). Row 2: all equal, nothing right. Each row holds three pairs."""
    rewards = torch.tensor(
        [
            [3.0, 1.0, 2.0, 0.0],
            [0.5, 5.0, 2.0, 2.0],
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    best = torch.tensor([0, 2, 3])
    assert pairwise_accuracy(rewards, best) == (4, 9)
    assert pairwise_accuracy(rewards[:2], best[:2]) == (4, 6)
    assert pairwise_accuracy(torch.tensor([[0.1, 0.7], [0.9, 0.2]]), torch.tensor([1, 1])) == (1, 2)


# --- RewardModel -------------------------------------------------------------------------


def test_reward_is_read_at_each_rows_last_real_token():
    """Padding after a row, whatever its ids, and a longer row beside it change nothing;
    the last real token does change the reward."""
    model = _reward_model()
    batch = pad_right(ROWS)
    with torch.no_grad():
        batched = model(batch.idx, batch.lengths)
        alone = torch.stack(
            [model(torch.tensor([ids]), torch.tensor([len(ids)]))[0] for ids, _ in ROWS]
        )
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)

        junk = batch.idx.clone()
        for row, (ids, _) in enumerate(ROWS):
            junk[row, len(ids) :] = torch.randint(0, VOCAB, (junk.size(1) - len(ids),))
        longer = torch.cat([junk, torch.randint(0, VOCAB, (3, 5))], dim=1)
        torch.testing.assert_close(model(longer, batch.lengths), batched, atol=1e-5, rtol=0)

        # The reward is the head applied to the hidden state at position length - 1.
        hidden, _ = model.backbone.hidden_states(batch.idx)
        expected = model.head(hidden[torch.arange(3), batch.lengths - 1]).squeeze(-1)
        torch.testing.assert_close(batched, expected)

        last = (torch.arange(3), batch.lengths - 1)
        changed = batch.idx.clone()
        changed[last] = (changed[last] + 1) % VOCAB
        moved = model(changed, batch.lengths)
    assert moved.shape == (3,)
    assert ((moved - batched).abs() > 1e-4).all(), (moved, batched)


def test_saved_reward_model_loads_with_identical_rewards(tmp_path, gpt2_vocab_dir):
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    config = GPTConfig.preset("tiny", block_size=32)  # GPT-2's vocabulary, to match it
    model = _reward_model(seed=3, config=config)
    folder = save_reward_model(model, tmp_path / "reward", tokenizer)
    assert (folder / HEAD_FILE).is_file()

    loaded = load_reward_model(folder).eval()
    batch = pad_right(ROWS)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(batch.idx, batch.lengths), model(batch.idx, batch.lengths), atol=0, rtol=0
        )


def test_loading_an_ordinary_checkpoint_as_a_reward_model_names_the_missing_head(tmp_path):
    folder = save_checkpoint(_gpt(), tmp_path / "plain")
    with pytest.raises(CheckpointError, match=r"reward_head\.safetensors"):
        load_reward_model(folder)


# --- DPO ---------------------------------------------------------------------------------


def _by_hand_log_probs(model: GPT, ids: list[int]) -> torch.Tensor:
    """(len - 1, vocab) log P(next token) for one unpadded row, run alone, in float64."""
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    return torch.log(torch.softmax(logits[0].double(), dim=-1))


def test_sequence_log_probs_sums_only_the_continuations_tokens():
    model = _gpt(4)
    batch = pad_right(ROWS)
    expected = []
    for ids, prompt_length in ROWS:
        log_probs = _by_hand_log_probs(model, ids)
        # Token t is predicted at position t - 1; sum the continuation's tokens only.
        expected.append(
            sum(log_probs[t - 1, ids[t]].item() for t in range(prompt_length, len(ids)))
        )
    with torch.no_grad():
        got = sequence_log_probs(model, batch.idx, batch.continuation_mask)
        torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype), atol=1e-4, rtol=0)

        # Padding ids do not matter.
        junk = batch.idx.clone()
        for row, (ids, _) in enumerate(ROWS):
            junk[row, len(ids) :] = 13
        torch.testing.assert_close(
            sequence_log_probs(model, junk, batch.continuation_mask), got, atol=1e-5, rtol=0
        )
        # With no continuation there is nothing to sum.
        empty = torch.zeros_like(batch.continuation_mask)
        assert torch.equal(sequence_log_probs(model, batch.idx, empty), torch.zeros(3))
    assert (got < 0).all()


def test_dpo_loss_follows_its_formula_and_trains_the_policy():
    torch.manual_seed(5)
    beta = 0.1
    reference_chosen, reference_rejected = -20 + torch.randn(4), -20 + torch.randn(4)

    # Policy == reference: nothing learned yet, the loss is log 2 and the margins zero.
    same = dpo_loss(
        reference_chosen, reference_rejected, reference_chosen, reference_rejected, beta
    )
    torch.testing.assert_close(same.loss, torch.tensor(math.log(2)))
    torch.testing.assert_close(same.margins, torch.zeros(4))

    policy_chosen = (reference_chosen + torch.randn(4)).requires_grad_()
    policy_rejected = (reference_rejected + torch.randn(4)).requires_grad_()
    out = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
    chosen_rewards = beta * (policy_chosen.detach() - reference_chosen)
    rejected_rewards = beta * (policy_rejected.detach() - reference_rejected)
    torch.testing.assert_close(out.chosen_rewards, chosen_rewards)
    torch.testing.assert_close(out.rejected_rewards, rejected_rewards)
    torch.testing.assert_close(out.margins, chosen_rewards - rejected_rewards)
    margins = chosen_rewards - rejected_rewards
    torch.testing.assert_close(out.loss, -F.logsigmoid(margins).mean())
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad

    # The loss falls when the chosen text becomes likelier relative to the reference.
    higher = dpo_loss(
        policy_chosen + 2.0, policy_rejected, reference_chosen, reference_rejected, beta
    )
    assert higher.loss < out.loss

    # Gradients reach the policy: d loss / d chosen = -beta * sigmoid(-margin) / B.
    out.loss.backward()
    pull = beta * torch.sigmoid(-margins) / 4
    torch.testing.assert_close(policy_chosen.grad, -pull)
    torch.testing.assert_close(policy_rejected.grad, pull)


def test_sequence_kl_is_the_exact_kl_summed_over_the_continuation():
    reference = _gpt(6)
    policy = copy.deepcopy(reference)
    batch = pad_right(ROWS)
    with torch.no_grad():
        zero = sequence_kl(policy, reference, batch.idx, batch.continuation_mask)
        torch.testing.assert_close(zero, torch.zeros(3), atol=1e-6, rtol=0)

        torch.manual_seed(7)
        for param in policy.parameters():
            param.add_(torch.randn_like(param) * 0.3)
        kl = sequence_kl(policy, reference, batch.idx, batch.continuation_mask)
        backwards = sequence_kl(reference, policy, batch.idx, batch.continuation_mask)
    assert (kl > 1e-3).all(), kl

    expected = []
    for ids, prompt_length in ROWS:
        p = torch.distributions.Categorical(logits=_by_hand_log_probs(policy, ids))
        q = torch.distributions.Categorical(logits=_by_hand_log_probs(reference, ids))
        per_position = torch.distributions.kl_divergence(p, q)  # KL(policy || reference)
        expected.append(per_position[prompt_length - 1 :].sum().item())
    expected = torch.tensor(expected, dtype=kl.dtype)
    torch.testing.assert_close(kl, expected, rtol=1e-4, atol=1e-5)
    # The direction matters: KL(reference || policy) is another number.
    assert not torch.allclose(backwards, expected, rtol=1e-2, atol=0)
