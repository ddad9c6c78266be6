"""The shape of a GPT-2 network: one small dataclass, plus the sizes OpenAI released."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

AttentionPath = Literal["fast", "explicit"]


@dataclass(frozen=True)
class GPTConfig:
    """Everything needed to build the network. Defaults are GPT-2 small (124M).

    `attention` picks how masked self-attention is computed; both paths give the same
    numbers (a test checks it):
      - "fast": PyTorch's fused `scaled_dot_product_attention`, for training and sampling;
      - "explicit": the textbook formula written out, which can also return the
        attention weights so a learner can look at them.
    """

    vocab_size: int = 50257  # 50,000 merges + 256 bytes + <|endoftext|>
    block_size: int = 1024  # the context: how many positions the model can see at once
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # GPT-2 pretraining used 0.1; 0 for fine-tuning and evaluation
    bias: bool = True  # GPT-2 has biases in its linear layers and layer norms
    layer_norm_epsilon: float = 1e-5
    attention: AttentionPath = "fast"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                "each head gets n_embd / n_head channels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attention not in ("fast", "explicit"):
            raise ValueError(
                f"GPTConfig.attention must be 'fast' or 'explicit', got {self.attention!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def replace(self, **changes: Any) -> GPTConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> GPTConfig:
        """Build from a dict, naming any field we do not know (a typo should not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown GPTConfig field(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """One of PRESETS by name, e.g. `GPTConfig.preset("gpt2-medium")`."""
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[name].replace(**overrides)


PRESETS: dict[str, GPTConfig] = {
    # The four sizes of the GPT-2 paper (parameter counts with tied embeddings).
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    # Teaching sizes: train in minutes on a laptop CPU.
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=256),
    "mini": GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=256),
    "small": GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=512),
}
