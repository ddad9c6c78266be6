"""The learning-rate schedule and the optimizer, as GPT-2-style training sets them up."""

from __future__ import annotations

import inspect
import math

import torch

from model import GPT
from tasks.train.settings import TrainSettings


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up to the peak, then cosine decay to the minimum at `max_steps`.

    Warm-up: early gradients are large and point in unreliable directions while AdamW's
    moment estimates are still empty; small first steps keep them from wrecking the
    initialisation. Cosine decay: large steps to make progress, small ones at the end to
    settle into a minimum.
    """
    peak, low = settings.learning_rate, settings.final_learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    decay_steps = max(1, settings.max_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / decay_steps)
    return low + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - low)


def make_optimizer(model: GPT, settings: TrainSettings, device_type: str) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only.

    Decay pulls weights towards zero, a regulariser for the matrices that mix features.
    Biases and layer-norm gains are vectors that set offsets and scales; decaying them
    only hurts. The embeddings (token and position) are matrices and are decayed, as in
    nanoGPT.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel does the whole update in one pass on CUDA; elsewhere the default
    # (foreach, several tensors per call) is the fast path.
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(
        groups,
        lr=settings.learning_rate,
        betas=(settings.beta1, settings.beta2),
        **({"fused": True} if fused else {}),
    )
