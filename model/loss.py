"""Next-token loss computed straight from the last hidden states, a slice of tokens at a time.

Why not `F.cross_entropy(lm_head(h), targets)`? With GPT-2's 50,257-token vocabulary the
logits of one small batch (8 x 256 tokens) are 411 MB of fp32, and the plain recipe
writes and re-reads tensors of that size several times (logits, log-softmax, their
gradients). Here each slice of tokens goes through the output layer, the softmax and the
gradient in one go, while its logits are still warm in the cache; the full logit tensor
never exists. The arithmetic (three matrix products) is the same, only the memory traffic
shrinks, which is what dominates a small model's training step on a CPU.

The gradient of the mean cross-entropy with respect to the logits is
`(softmax(logits) - one_hot(target)) / n_targets`, so we can form it in the forward pass
and keep only the (small) gradients of the hidden states and of the output weight.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # same convention as F.cross_entropy: these targets add no loss


class _ChunkedLMHeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size: int, needs_grad: bool):
        n_targets = (targets != IGNORE_INDEX).sum().clamp(min=1)
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if needs_grad else None
        grad_weight = torch.zeros_like(weight) if needs_grad else None
        # In fp32, every slice's logits go into one buffer, reused: a fresh (chunk, V)
        # tensor per slice (100 MB for 512 x 50,257) costs the kernel a page-zeroing
        # pass each time, a sizeable share of a CPU training step.
        reuse = hidden.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled()
        buffer = (
            hidden.new_empty((min(chunk_size, hidden.size(0)), weight.size(0))) if reuse else None
        )

        for start in range(0, hidden.size(0), chunk_size):
            h = hidden[start : start + chunk_size]
            t = targets[start : start + chunk_size]
            keep = t != IGNORE_INDEX
            t_safe = t.clamp(min=0)  # ignored rows still need a valid index to gather

            # log_softmax is one fused, numerically stable pass over the slice's logits.
            if buffer is not None:
                log_probs = torch.mm(h, weight.t(), out=buffer[: h.size(0)])
                torch.log_softmax(log_probs, dim=-1, out=log_probs)
            else:
                log_probs = torch.log_softmax((h @ weight.t()).float(), dim=-1)
            total -= (log_probs.gather(1, t_safe.unsqueeze(1)).squeeze(1) * keep).sum()

            if needs_grad:
                probs = log_probs.exp_()  # the softmax, in the same memory
                probs[torch.arange(t.size(0), device=t.device), t_safe] -= 1.0
                probs = probs.to(hidden.dtype)
                # The 1/n_targets factor (0 for ignored rows) is applied to the slim
                # (n, C) operands rather than to the wide (n, V) gradient: same result,
                # far less memory traffic.
                scale = (keep / n_targets).to(hidden.dtype).unsqueeze(1)
                grad_hidden[start : start + chunk_size] = (probs @ weight) * scale
                grad_weight.addmm_(probs.t(), h * scale)

        ctx.save_for_backward(grad_hidden, grad_weight)
        return total / n_targets

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is None:
            raise RuntimeError("loss was computed without gradients (torch.no_grad?)")
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = 512,
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, without full logits.

    hidden: (N, C) final hidden states; weight: (V, C) output layer; targets: (N,) ids,
    IGNORE_INDEX where a position should not count. Equal to
    `F.cross_entropy(hidden @ weight.T, targets)` up to float rounding (a test checks it).
    """
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ChunkedLMHeadCrossEntropy.apply(hidden, weight, targets, chunk_size, needs_grad)
