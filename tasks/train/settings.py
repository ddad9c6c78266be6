"""Everything a training run needs to know, checked before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["auto", "fp32", "bf16"]


class TrainSettings(BaseModel):
    """One training run: pretraining from scratch (`model` preset) or fine-tuning
    (`init_from` a checkpoint), on a tokens folder made by the encode flow.

    The global batch is counted in tokens, as in the GPT-2 and nanoGPT recipes: each
    optimizer step sees `batch_tokens` tokens, gathered as `micro_batch` sequences of
    `context` tokens per forward/backward pass, accumulated over as many passes (and
    processes) as it takes.
    """

    model_config = ConfigDict(extra="forbid")

    # The model
    model: str = Field("tiny", description="GPTConfig preset when training from scratch")
    init_from: str | None = Field(
        None, description="fine-tune: our checkpoint, a Hugging Face GPT-2 folder or hub id"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="GPT-2 pretraining used 0.1")
    # The data
    tokens: Path = Field(description="tokens folder written by `gpt2lab encode`")
    context: int | None = Field(None, ge=1, description="tokens per sequence; default: the model's")
    micro_batch: int = Field(8, ge=1, description="sequences per forward/backward pass")
    batch_tokens: int = Field(
        8 * 256, ge=1, description="tokens per optimizer step (all passes and processes)"
    )
    # The optimizer and its schedule
    max_steps: int = Field(200, ge=1)
    learning_rate: float = Field(3e-3, gt=0, description="peak, reached after warm-up")
    min_learning_rate: float | None = Field(
        None, ge=0, description="end of the cosine decay; default: learning_rate / 10"
    )
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0, description="on weight matrices only")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 = no clipping")
    # Evaluation and checkpoints
    eval_interval: int = Field(50, ge=1, description="steps between validation losses")
    eval_batches: int = Field(8, ge=1, description="validation batches (the same each time)")
    checkpoint_interval: int = Field(100, ge=1)
    keep_last: int = Field(2, ge=1, description="step checkpoints kept (plus the best)")
    # The machine
    seed: int = 0
    device: Device = "auto"
    precision: Precision = Field("auto", description="auto: bf16 on CUDA, fp32 elsewhere")
    compile: bool = Field(False, description="torch.compile the model (CUDA)")

    @model_validator(mode="after")
    def _schedule_is_possible(self) -> TrainSettings:
        if self.min_learning_rate is not None and self.min_learning_rate > self.learning_rate:
            raise ValueError("min_learning_rate must not exceed learning_rate")
        return self

    @property
    def final_learning_rate(self) -> float:
        if self.min_learning_rate is None:
            return self.learning_rate / 10
        return self.min_learning_rate

    def accumulation_steps(self, context: int, world_size: int = 1) -> int:
        """Forward/backward passes per process and optimizer step; ValueError when the
        global batch cannot be split evenly."""
        per_pass = self.micro_batch * context * world_size
        if self.batch_tokens % per_pass:
            raise ValueError(
                f"batch_tokens ({self.batch_tokens}) must be a multiple of micro_batch x context"
                f" x processes ({self.micro_batch} x {context} x {world_size} = {per_pass})"
            )
        return self.batch_tokens // per_pass
