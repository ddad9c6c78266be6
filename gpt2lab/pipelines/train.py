"""The `train` flow: pretrain GPT-2 on token shards, or fine-tune a pretrained one.

    data (tokens folder, or a text/JSON-lines file encoded on the fly)
      -> training loop (checkpoints, resume)  -> loss curve, samples -> registered model

Everything goes to one MLflow run: the config as params, per-step loss, learning rate,
gradient norm and throughput, the validation loss, samples from fixed prompts at each
evaluation, the loss curve, and the final model, registered as the newest version
(`models:/<name>/latest`) and aliased `best` when it beats the versions before it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from pydantic import BaseModel, Field

from gpt2lab.fingerprint import fingerprint_path
from gpt2lab.model import GPT, SamplingConfig, generate, load_tokenizer
from gpt2lab.pipelines.mlflow_model import log_checkpoint_model
from gpt2lab.pipelines.tracking import log_metrics_batch, tracked_run
from gpt2lab.pipelines.workspace import checkpoints_dir
from gpt2lab.reports.train_charts import loss_curve
from gpt2lab.tasks.encode.token_shards import TOKENIZER_DIR, read_meta
from gpt2lab.tasks.train.loop import Callbacks, Metrics, TrainResult, train
from gpt2lab.tasks.train.settings import TrainSettings
from gpt2lab.tasks.train.text_data import tokenizer_for, tokens_from_text_file


class TrainConfig(TrainSettings):
    """The train flow's settings: the loop's, plus where the run lives and what to log."""

    name: str = Field("gpt2lab", description="run name; also the run folder's name")
    out: Path | None = Field(None, description="run folder (default: workspace/checkpoints/<name>)")
    tokenizer: str = Field(
        "gpt2", description="for a text data file: tokenizer when the model folder has none"
    )
    prompts: list[str] = Field(
        default=["The meaning of", "Once upon a time"], description="sampled at each evaluation"
    )
    sample_tokens: int = Field(40, ge=1)
    log_every: int = Field(10, ge=1, description="steps between MLflow metric writes")
    register_as: str | None = Field(
        "gpt2lab", description="registered model name; none to skip registering"
    )

    def run_dir(self) -> Path:
        return self.out or checkpoints_dir() / self.name


class TrainFlowResult(BaseModel):
    run_dir: Path
    steps: int
    val_loss: float | None
    best_val_loss: float | None
    checkpoint: Path | None
    model_version: int | None
    mlflow_run_id: str


@task(name="prepare-data")
def prepare_data(config: TrainConfig) -> Path:
    """The tokens folder to train on: `tokens` itself, or a text file encoded into the run
    folder with the model's tokenizer."""
    if config.tokens.is_dir():
        return config.tokens
    tokenizer = tokenizer_for(config.init_from, config.tokenizer)
    return tokens_from_text_file(config.tokens, tokenizer, config.run_dir() / "data")


class MlflowProgress:
    """The loop's callbacks, writing to one MLflow run in batches."""

    def __init__(self, run_id: str, config: TrainConfig, tokens: Path) -> None:
        self.run_id, self.config = run_id, config
        self.tokenizer = load_tokenizer(tokens / TOKENIZER_DIR)
        self.pending: list[tuple[str, float, int]] = []
        self.train_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.logger = get_run_logger()

    def callbacks(self) -> Callbacks:
        return Callbacks(on_step=self.on_step, on_eval=self.on_eval)

    def on_step(self, step: int, metrics: Metrics) -> None:
        self.pending += [(name, value, step) for name, value in metrics.items()]
        self.train_points.append((step, metrics["train/loss"]))
        if step % self.config.log_every == 0:
            self.flush()
            self.logger.info("step %d: loss %.3f, %.0f tokens/s", step,
                             metrics["train/loss"], metrics["train/tokens_per_s"])  # fmt: skip

    def on_eval(self, step: int, metrics: Metrics, model: GPT) -> None:
        self.pending += [(name, value, step) for name, value in metrics.items()]
        self.val_points.append((step, metrics["val/loss"]))
        self.flush()
        self.logger.info("step %d: validation loss %.3f", step, metrics["val/loss"])
        mlflow.MlflowClient().log_text(self.run_id, self.samples(model),
                                       f"samples/step-{step:06d}.txt")  # fmt: skip

    def samples(self, model: GPT) -> str:
        """The fixed prompts continued with a fixed seed: the same question at every
        evaluation, so the answers show what the model has learnt since."""
        sampling = SamplingConfig(max_new_tokens=self.config.sample_tokens, temperature=0.8,
                                  top_k=40, seed=0)  # fmt: skip
        prompts = [self.tokenizer.encode(p) for p in self.config.prompts]
        completions = generate(model, prompts, sampling, eot_token=self.tokenizer.eot_token)
        return "\n\n".join(
            f"### {prompt}\n{prompt}{self.tokenizer.decode(c.tokens)}"
            for prompt, c in zip(self.config.prompts, completions, strict=True)
        )

    def flush(self) -> None:
        log_metrics_batch(self.run_id, self.pending)
        self.pending = []


@flow(name="train", log_prints=True)
def train_flow(config: TrainConfig) -> TrainFlowResult:
    tokens = prepare_data(config)
    settings = TrainSettings(**config.model_dump(include=set(TrainSettings.model_fields)))
    settings = settings.model_copy(update={"tokens": tokens})
    meta = read_meta(tokens)
    lineage = {"tokens": meta.fingerprint, "tokenizer": meta.tokenizer["fingerprint"]}
    if config.init_from is not None:
        init = Path(config.init_from)
        lineage["init"] = fingerprint_path(init) if init.exists() else config.init_from
    with tracked_run("train", run_name=config.name, lineage=lineage, params=config) as run:
        progress = MlflowProgress(run.info.run_id, config, tokens)
        # Called directly, not submitted: the loop runs in this (main) thread, where it
        # can catch SIGTERM and Ctrl-C to save a checkpoint before stopping.
        result: TrainResult = task(train, name="train-loop")(
            settings, config.run_dir(), progress.callbacks()
        )
        progress.flush()
        with tempfile.TemporaryDirectory() as tmp:
            chart = loss_curve(progress.train_points, progress.val_points,
                               Path(tmp) / "loss.png", vocab_size=meta.vocab_size)  # fmt: skip
            mlflow.log_artifact(str(chart), "charts")
        version = None
        if result.last_checkpoint is not None and config.register_as:
            version = register(result, config.register_as)
    return TrainFlowResult(
        run_dir=config.run_dir(), steps=result.steps, val_loss=result.val_loss,
        best_val_loss=result.best_val_loss, checkpoint=result.last_checkpoint,
        model_version=version, mlflow_run_id=run.info.run_id,
    )  # fmt: skip


def register(result: TrainResult, name: str) -> int:
    """Log the final checkpoint as a new model version of `name` and alias it `best` when
    its validation loss beats the version that holds `best` now.

    MLflow reserves the alias `latest`: `models:/<name>/latest` always means the newest
    version, which is this one, so it needs no alias of ours."""
    client = MlflowClient()
    aliases = []
    if result.val_loss is not None:
        try:
            holder = client.get_model_version_by_alias(name, "best")
            holder_loss = float(holder.tags.get("val_loss", "inf"))
        except mlflow.exceptions.MlflowException:  # no model, or no version aliased best
            holder_loss = float("inf")
        if result.val_loss < holder_loss:
            aliases.append("best")
    version = log_checkpoint_model(result.last_checkpoint, name, aliases)
    assert version is not None
    if result.val_loss is not None:
        client.set_model_version_tag(name, version.version, "val_loss", str(result.val_loss))
    return int(version.version)


def run_train(config: TrainConfig) -> TrainFlowResult:
    """Run the flow (the CLI's entry point)."""
    return train_flow(config)
