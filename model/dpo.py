"""Direct Preference Optimization (Rafailov et al., 2023): learning from comparisons
without a reward model or reinforcement learning.

RLHF tunes a policy to earn a high reward while staying close (in KL) to a frozen
reference model. The DPO paper shows that the best policy for that goal satisfies

    reward(x, y) = beta * log( policy(y | x) / reference(y | x) ) + (something of x only)

so the policy itself defines an "implicit reward". Put that into the Bradley-Terry loss
of a reward model and the policy can be trained on the comparisons directly:

    loss = -log sigmoid( beta * [ log pi(chosen)/ref(chosen) - log pi(rejected)/ref(rejected) ] )

beta sets how far the policy may move from the reference: small beta, a weak pull back.

All the functions here take sequences padded on the right, and a `continuation_mask`
that is 1 on the tokens of the continuation (the part that was judged) and 0 on the
prompt and the padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.gpt import GPT


def sequence_log_probs(
    model: GPT, idx: torch.Tensor, continuation_mask: torch.Tensor
) -> torch.Tensor:
    """(B,) log P(continuation | prompt): the sum over the continuation's tokens. (The
    first token can never be a continuation token: it has nothing to be predicted from.)

    Only the positions that predict a continuation token go through the output layer:
    with GPT-2's 50,257-word vocabulary that layer is most of the work, and the prompt
    and the padding would only be multiplied by zero.
    """
    hidden, _ = model.hidden_states(idx[:, :-1])
    wanted = continuation_mask[:, 1:].bool()  # position t predicts token t + 1
    logits = model.lm_head(hidden[wanted]).float()  # (tokens wanted, vocabulary)
    per_token = -F.cross_entropy(logits, idx[:, 1:][wanted], reduction="none")
    return _sum_per_row(per_token, wanted)


@dataclass
class DPOLoss:
    loss: torch.Tensor  # the mean loss, to call backward() on
    chosen_rewards: torch.Tensor  # (B,) implicit rewards beta * log pi/ref, detached
    rejected_rewards: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        """How much higher the chosen text's implicit reward is; > 0 means ranked right."""
        return self.chosen_rewards - self.rejected_rewards


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> DPOLoss:
    """The DPO loss from (B,) sequence log-probabilities under the policy and the reference."""
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOLoss(loss, chosen.detach(), rejected.detach())


@torch.no_grad()
def sequence_kl(
    policy: GPT, reference: GPT, idx: torch.Tensor, continuation_mask: torch.Tensor
) -> torch.Tensor:
    """(B,) KL(policy || reference) in nats over each row's continuation, where the
    continuations were *sampled from the policy*.

    At every continuation position we take the exact KL between the two next-token
    distributions, sum_v p(v) (log p(v) - log q(v)), and add these up along the sample.
    Averaged over samples this estimates the KL between the two models' distributions of
    whole continuations, like the simpler log p(y) - log q(y), but it is never negative
    and varies much less from sample to sample.
    """
    wanted = continuation_mask[:, 1:].bool()
    policy_hidden, _ = policy.hidden_states(idx[:, :-1])
    reference_hidden, _ = reference.hidden_states(idx[:, :-1])
    log_p = F.log_softmax(policy.lm_head(policy_hidden[wanted]).float(), dim=-1)
    log_q = F.log_softmax(reference.lm_head(reference_hidden[wanted]).float(), dim=-1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1)
    return _sum_per_row(per_position, wanted)


def _sum_per_row(values: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """Add up `values`, one per True of the (B, T) `wanted`, into one total per row."""
    row = torch.arange(wanted.size(0), device=wanted.device).unsqueeze(1).expand_as(wanted)
    return values.new_zeros(wanted.size(0)).index_add(0, row[wanted], values)
