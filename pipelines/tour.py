"""The `tour` flow (`gpt2lab tour`): a one-minute offline tour, on text shipped with gpt2lab.

learn a BPE -> fit a tiny GPT-2 for a few hundred steps -> sample, all tracked in MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow, task
from pydantic import BaseModel, Field, field_validator

from model import PRESETS, SamplingConfig
from pipelines.tracking import lineage_tags, log_metrics_batch, tracked_run
from pipelines.workspace import checkpoints_dir, workspace_dir
from reports.mlflow_names import TRAIN_LOSS
from tasks.tour import fit_tiny_model, learn_tokenizer, sample_texts, tour_text

learn_tokenizer_task = task(learn_tokenizer, name="learn-tokenizer")
fit_tiny_model_task = task(fit_tiny_model, name="fit-tiny-model")
sample_texts_task = task(sample_texts, name="sample-texts")


class TourConfig(BaseModel):
    """Settings of the tour flow (every field is a CLI option of `gpt2lab tour`)."""

    vocab_size: int = Field(
        1024, ge=257, description="BPE vocabulary, bytes and <|endoftext|> included"
    )
    preset: str = Field("tiny", description=f"model size, one of {', '.join(PRESETS)}")
    context: int = Field(64, ge=8, description="tokens per training window")
    steps: int = Field(300, ge=0, description="optimizer steps on the tour text")
    prompts: list[str] = ["A language model", "Sampling turns"]
    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_k: int | None = Field(40, ge=1)
    seed: int = 0

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return name


class TourResult(BaseModel):
    tokenizer_dir: Path
    model_dir: Path
    first_loss: float | None
    last_loss: float | None
    n_parameters: int
    samples: list[str]
    mlflow_run_id: str


@flow(name="tour")
def tour_flow(config: TourConfig = TourConfig()) -> TourResult:
    text = tour_text()
    tokenizer = learn_tokenizer_task(
        text, config.vocab_size, workspace_dir() / "tour" / "tokenizer"
    )
    model_config = PRESETS[config.preset].replace(block_size=config.context)
    sampling = SamplingConfig(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_k=config.top_k,
        seed=config.seed,
    )
    with tracked_run("tour", lineage={"tokenizer": tokenizer.fingerprint}, params=config) as run:
        fitted = fit_tiny_model_task(
            text,
            tokenizer.path,
            model_config,
            config.steps,
            checkpoints_dir() / "tour",
            seed=config.seed,
        )
        mlflow.set_tags(lineage_tags({"checkpoint": fitted.fingerprint}))
        log_metrics_batch(run, [(TRAIN_LOSS, loss, i) for i, loss in enumerate(fitted.losses)])
        samples = sample_texts_task(fitted.path, config.prompts, sampling)
        pairs = zip(config.prompts, samples, strict=True)
        mlflow.log_dict(
            {"samples": [{"prompt": p, "completion": s} for p, s in pairs]}, "samples.json"
        )
    return TourResult(
        tokenizer_dir=tokenizer.path,
        model_dir=fitted.path,
        first_loss=fitted.losses[0] if fitted.losses else None,
        last_loss=fitted.losses[-1] if fitted.losses else None,
        n_parameters=fitted.n_parameters,
        samples=samples,
        mlflow_run_id=run.info.run_id,
    )
