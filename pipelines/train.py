"""The `train` flow: pretrain GPT-2 on token shards, or fine-tune a pretrained one.

    data (tokens folder, or a text/JSON-lines file encoded on the fly)
      -> training loop (checkpoints, resume)  -> loss curve, samples -> registered model

Everything goes to one MLflow run: the config as params, per-step loss, learning rate,
gradient norm and throughput, the validation loss, samples from fixed prompts at each
evaluation, the loss curve, the data it read (an MLflow dataset input), and the final
checkpoint as an MLflow logged model, registered as the newest version
(`models:/<name>/latest`) and aliased `best` when it beats the versions before it.

A registered model name stands for one validation set: `best` compares validation losses,
which only means something on the same data. The first version fixes the name's
validation data (its fingerprint, tag `gpt2lab.val_data`); a model validated on other
data is registered as `<name>-data-<first 8 characters of its fingerprint>` instead.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from pydantic import BaseModel, Field

from model import GPT, SamplingConfig, generate, load_tokenizer
from pipelines.failure_hooks import notify_failure
from pipelines.interrupts import RunInterrupted
from pipelines.mlflow_model import (
    link_metric,
    log_checkpoint_model,
    log_checkpoint_reference,
    model_tags,
    register_logged_model,
)
from pipelines.model_refs import is_registered, resolve_model
from pipelines.run_lock import folder_lock
from pipelines.tracking import (
    MetricBuffer,
    TrackingUnavailable,
    describe,
    failing_fast,
    log_dataset,
    tracked_run,
)
from pipelines.workspace import checkpoints_dir, mlflow_tracking_uri
from reports.mlflow_names import (
    BEST_ALIAS,
    SAMPLES_FOLDER,
    TRAIN_GRAD_NORM,
    TRAIN_LEARNING_RATE,
    TRAIN_LOSS,
    TRAIN_MFU,
    TRAIN_TOKENS_PER_S,
    VAL_DATA_TAG,
    VAL_LOSS,
    VAL_LOSS_TAG,
)
from reports.train_charts import loss_curve
from tasks.encode.token_shards import TOKENIZER_DIR, TokenShardsMeta, read_meta
from tasks.fingerprint import fingerprint_path
from tasks.train.checkpoints import BEST, TrainingError, latest_checkpoint
from tasks.train.loop import CHECKPOINTS_DIR, Callbacks, StepMetrics, TrainResult, train
from tasks.train.settings import TrainSettings
from tasks.train.text_data import DataFormat, tokenizer_for, tokens_from_text_file


class TrainConfig(TrainSettings):
    """The train flow's settings: the loop's, plus where the run lives and what to log."""

    # The settings that change what is learnt, and how fast: the run's MLflow params, so
    # training runs compare by them. The rest (logging, folders, sample prompts) are in
    # the run's config.json.
    COMPARED: ClassVar[tuple[str, ...]] = (
        "model",
        "init_from",
        "dropout",
        "context",
        "micro_batch",
        "batch_tokens",
        "max_steps",
        "learning_rate",
        "min_learning_rate",
        "warmup_steps",
        "weight_decay",
        "beta1",
        "beta2",
        "grad_clip",
        "eval_interval",
        "eval_batches",
        "seed",
        "device",
        "devices",
        "precision",
        "compile",
        "format",
    )

    name: str = Field("gpt2lab", description="run name; also the run folder's name")
    out: Path | None = Field(None, description="run folder (default: workspace/checkpoints/<name>)")
    tokenizer: str = Field(
        "gpt2", description="for a text data file: tokenizer when the model folder has none"
    )
    format: DataFormat = Field(
        "text",
        description="for a data file: 'text' (.txt, or .jsonl with a text field) or "
        "'persona-chat' (.jsonl of PERSONA-CHAT dialogues: persona + history + reply)",
    )
    prompts: list[str] = Field(
        default=["The meaning of", "Once upon a time"], description="sampled at each evaluation"
    )
    sample_tokens: int = Field(40, ge=1)
    log_every: int = Field(10, ge=1, description="steps between MLflow metric writes")
    tracking_patience_s: float = Field(
        600,
        ge=0,
        description="at the end, how long to wait for an unreachable MLflow tracking server "
        "before stopping with an error (training itself never waits for it)",
    )
    register_as: str | None = Field(
        "gpt2lab", description="registered model name; none to skip registering"
    )
    devices: int = Field(
        1,
        ge=1,
        description="training processes on this machine (GPUs, or CPU processes); "
        "more than 1 runs DistributedDataParallel under torchrun",
    )

    def run_dir(self) -> Path:
        return self.out or checkpoints_dir() / self.name

    def loop_settings(self, tokens: Path | None = None) -> TrainSettings:
        """The training loop's share of the settings (`tokens` replaced when given)."""
        values = self.model_dump(include=set(TrainSettings.model_fields))
        return TrainSettings(**{**values, **({"tokens": tokens} if tokens else {})})


class TrainFlowResult(BaseModel):
    run_dir: Path
    steps: int
    val_loss: float | None
    best_val_loss: float | None
    checkpoint: Path | None
    model_version: int | None
    mlflow_run_id: str
    model_id: str | None = None  # the final checkpoint's MLflow logged model
    registered_as: str | None = None  # the registered model name it went to, if any


RESULT_FILE = "distributed-result.json"  # written by train_worker's rank 0


@task(name="prepare-data")
def prepare_data(config: TrainConfig) -> Path:
    """The tokens folder to train on: `tokens` itself, or a text file encoded into the run
    folder with the model's tokenizer."""
    if config.tokens.is_dir():
        return config.tokens
    tokenizer = tokenizer_for(config.init_from, config.tokenizer)
    return tokens_from_text_file(
        config.tokens, tokenizer, config.run_dir() / "data", format=config.format
    )


def training_lineage(config: TrainConfig, meta: TokenShardsMeta) -> dict[str, str]:
    """The fingerprints of what a training run starts from: its token shards (`meta`),
    their tokenizer, and the checkpoint it starts from (if any)."""
    lineage = {"tokens": meta.fingerprint, "tokenizer": meta.tokenizer["fingerprint"]}
    if config.init_from is not None:
        init = Path(config.init_from)
        lineage["init"] = fingerprint_path(init) if init.exists() else config.init_from
    return lineage


def checkpoint_tags(checkpoint: Path, lineage: dict[str, str]) -> dict[str, str]:
    """A checkpoint's logged-model tags: its fingerprint and lineage (`model_tags`), and
    the data its validation loss was measured on (what `best` compares by)."""
    # The validation split is part of the token shards.
    return model_tags(checkpoint, lineage) | {VAL_DATA_TAG: lineage["tokens"]}


class MlflowProgress:
    """The loop's callbacks, writing to one MLflow run in batches.

    The tracking server may be away for a while (restarted, network down): training goes
    on, metrics, samples and checkpoints wait in memory and are sent when it answers again
    (see `MetricBuffer`). `close` waits `tracking_patience_s` for it at the end.

    Each step checkpoint the loop writes becomes an MLflow logged model of the run, with
    the validation loss of its step linked to it, so the run's Models column and each
    model's page show how the checkpoints compare. The final one is logged at the end,
    with its weights, by the flow."""

    def __init__(
        self,
        run_id: str,
        config: TrainConfig,
        tokens: Path,
        logger: Any | None = None,
        lineage: dict[str, str] | None = None,
    ) -> None:
        self.run_id, self.config = run_id, config
        self.tokenizer = load_tokenizer(tokens / TOKENIZER_DIR)
        if lineage is None:
            lineage = training_lineage(config, read_meta(tokens))
        self.lineage = lineage
        self.metrics = MetricBuffer(run_id)
        self.texts: list[tuple[str, str]] = []  # (text, artifact file) not yet logged
        # (step, folder, tags) of checkpoints not yet logged as models
        self.checkpoints: list[tuple[int, Path, dict[str, str]]] = []
        self.logger = logger or get_run_logger()

    def callbacks(self) -> Callbacks:
        return Callbacks(
            on_step=self.on_step, on_eval=self.on_eval, on_checkpoint=self.on_checkpoint
        )

    def on_step(self, step: int, metrics: StepMetrics) -> None:
        self.metrics.add([(name, value, step) for name, value in step_metrics(metrics).items()])
        if step % self.config.log_every == 0:
            self.flush()
            self.logger.info(
                "step %d: loss %.3f, %.0f tokens/s", step, metrics.loss, metrics.tokens_per_s
            )

    def on_eval(self, step: int, val_loss: float, model: GPT) -> None:
        self.metrics.add([(VAL_LOSS, val_loss, step)])
        self.texts.append((self.samples(model), f"{SAMPLES_FOLDER}/step-{step:06d}.txt"))
        self.flush()
        self.logger.info("step %d: validation loss %.3f", step, val_loss)

    def on_checkpoint(self, step: int, folder: Path) -> None:
        """Note a step checkpoint, to log as a model at the next flush. Its fingerprint is
        taken now: the folder may be pruned (`keep_last`) before the server answers."""
        if folder.name == BEST or step == self.config.max_steps:
            # `best` is a copy of a step's weights, overwritten as the loss falls; the
            # last step's checkpoint is logged with its weights when the run ends.
            return
        self.checkpoints.append((step, folder, checkpoint_tags(folder, self.lineage)))

    def samples(self, model: GPT) -> str:
        """The fixed prompts continued with a fixed seed: the same question at every
        evaluation, so the answers show what the model has learnt since."""
        sampling = SamplingConfig(
            max_new_tokens=self.config.sample_tokens, temperature=0.8, top_k=40, seed=0
        )
        prompts = [self.tokenizer.encode(p) for p in self.config.prompts]
        completions = generate(model, prompts, sampling, eot_token=self.tokenizer.eot_token)
        return "\n\n".join(
            f"### {prompt}\n{prompt}{self.tokenizer.decode(c.tokens)}"
            for prompt, c in zip(self.config.prompts, completions, strict=True)
        )

    def flush(self) -> bool:
        """Send what waits, if the server answers; True when nothing is left."""
        if not self.metrics.flush():
            return False
        while self.texts:
            text, artifact_file = self.texts[0]
            try:
                with failing_fast():
                    mlflow.MlflowClient().log_text(self.run_id, text, artifact_file)
            except Exception:  # noqa: BLE001 - the server went away again: keep it for later
                return False
            self.texts.pop(0)
        while self.checkpoints:
            step, folder, tags = self.checkpoints[0]
            try:
                with failing_fast():
                    model_id = log_checkpoint_reference(self.run_id, folder, step, tags)
                    link_metric(self.run_id, VAL_LOSS, step, model_id)
            except Exception:  # noqa: BLE001 - the server went away again: keep it for later
                return False
            self.checkpoints.pop(0)
        return True

    def close(self) -> None:
        """Send everything, waiting for the server up to `tracking_patience_s`.

        If it does not come back, the points are written to `unlogged-metrics.jsonl` in the
        run folder (nothing measured is lost), and one line says so; the checkpoints are
        kept, so running the same command again resumes."""
        deadline = time.monotonic() + self.config.tracking_patience_s
        try:
            while not self.flush():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TrackingUnavailable(
                        f"MLflow tracking at {mlflow.get_tracking_uri()} unreachable: "
                        f"{len(self.metrics.pending)} metric points of run {self.run_id} "
                        "not logged"
                    )
                if self.metrics.pending:  # waits with backoff, raises when time is up
                    self.metrics.close(remaining)
                else:  # only samples left: the server answered a moment ago
                    time.sleep(min(1.0, remaining))
        except TrackingUnavailable as error:
            kept = self.config.run_dir() / UNLOGGED_FILE
            kept.parent.mkdir(parents=True, exist_ok=True)
            with kept.open("a", encoding="utf-8") as out:
                for m in self.metrics.pending:
                    point = {"run_id": self.run_id, "key": m.key, "value": m.value}
                    point |= {"step": m.step, "timestamp": m.timestamp}
                    out.write(json.dumps(point) + "\n")
            raise TrackingUnavailable(
                f"{error}; they are in {kept}, the checkpoints in {self.config.run_dir()} "
                "(run the same command again to resume)"
            ) from None


UNLOGGED_FILE = "unlogged-metrics.jsonl"


@flow(name="train", on_failure=[notify_failure])
def train_flow(config: TrainConfig) -> TrainFlowResult:
    """Train (or resume) into `config.run_dir()` (see the module)."""
    with folder_lock(config.run_dir()):  # a second run writing the same folder refuses at once
        return _train(config)


def _train(config: TrainConfig) -> TrainFlowResult:
    params: TrainConfig | dict[str, Any] = config
    compared = TrainConfig.COMPARED
    if config.init_from is not None and is_registered(config.init_from):
        # A registered model (models:/NAME@ALIAS): train from its downloaded folder, and
        # record both the reference and the folder it named at this moment.
        folder = resolve_model(config.init_from)
        params = config.model_dump(mode="json") | {"init_from_folder": folder}
        compared = (*compared, "init_from_folder")
        config = config.model_copy(update={"init_from": folder})
    tokens = prepare_data(config)
    meta = read_meta(tokens)
    lineage = training_lineage(config, meta)
    with tracked_run(
        "train",
        run_name=config.name,
        lineage=lineage,
        params=params,
        compared=compared,
        system_metrics=True,
    ) as run:
        run_id = run.info.run_id
        # The token shards it trains on; their held-out split gives the validation loss.
        log_dataset(run_id, config.tokens.name, config.tokens, meta.fingerprint, "training")
        if (latest := latest_checkpoint(config.run_dir() / CHECKPOINTS_DIR)) is not None:
            get_run_logger().info("resuming %s from %s", config.run_dir(), latest.name)
        if config.devices > 1:
            result = train_on_processes(config, tokens, run_id)
        else:
            progress = MlflowProgress(run_id, config, tokens, lineage=lineage)
            # Called directly, not submitted: the loop runs in this (main) thread, where
            # it can catch SIGTERM and Ctrl-C to save a checkpoint before stopping.
            result = task(train, name="train-loop")(
                config.loop_settings(tokens), config.run_dir(), progress.callbacks()
            )
            try:
                progress.close()
            except TrackingUnavailable:
                # The run cannot be marked FAILED on a server that is away: end it here
                # with one quick try, so the error below is not held up by MLflow's retries.
                with failing_fast(), contextlib.suppress(Exception):
                    mlflow.end_run("FAILED")
                raise
        log_loss_curve(run_id, meta.vocab_size)
        if result.stopped:  # Ctrl-C or SIGTERM: saved at a safe point; the run ends KILLED
            raise RunInterrupted(f"stopped at step {result.steps}")
        version, model_id, registered = None, None, None
        if result.last_checkpoint is not None:
            tags = checkpoint_tags(result.last_checkpoint, lineage)
            if result.val_loss is not None:
                tags[VAL_LOSS_TAG] = str(result.val_loss)
            # Logged at its step, the model gets the run's metrics of that step linked to it
            # (MLflow does it), the validation loss among them.
            model_id = log_checkpoint_model(result.last_checkpoint, tags=tags, step=result.steps)
            if config.register_as:
                registered = name_for_data(config.register_as, meta.fingerprint)
                if registered != config.register_as:
                    get_run_logger().warning(
                        "registered model %r was validated on other data: registering as %r",
                        config.register_as,
                        registered,
                    )
                version = register(result, registered, meta.fingerprint, model_id)
        describe(run_id, train_description(config, result, registered, version))
    return TrainFlowResult(
        run_dir=config.run_dir(),
        steps=result.steps,
        val_loss=result.val_loss,
        best_val_loss=result.best_val_loss,
        checkpoint=result.last_checkpoint,
        model_version=version,
        mlflow_run_id=run_id,
        model_id=model_id,
        registered_as=registered,
    )


def train_description(
    config: TrainConfig, result: TrainResult, registered: str | None, version: int | None
) -> str:
    """The run page's summary: what was trained on what, and how far it got."""
    what = f"fine-tuned from `{config.init_from}`" if config.init_from else "trained from scratch"
    context = config.context or "the model's"
    lines = [
        f"**Train**: a `{config.model}` GPT-2 {what} on `{config.tokens.name}`, "
        f"{result.steps} steps (context {context}).",
    ]
    if result.val_loss is not None:
        lines.append(f"Validation loss {result.val_loss:.3f} (best {result.best_val_loss:.3f}).")
    if registered and version:
        lines.append(f"Registered as `models:/{registered}/{version}`.")
    return "\n\n".join(lines)


def torchrun_command(
    config_file: Path, run_dir: Path, devices: int, mlflow_run_id: str | None = None
) -> list[str]:
    """torchrun on this machine, starting `devices` processes of train_worker."""
    placement = ["--standalone", "--nproc_per_node", str(devices)]
    return _torchrun(placement, config_file, run_dir, mlflow_run_id)


def torchrun_node_command(
    config_file: Path,
    run_dir: Path,
    *,
    nnodes: int,
    nproc_per_node: int,
    rendezvous_endpoint: str,
    rendezvous_id: str,
    local_addr: str | None = None,
    mlflow_run_id: str | None = None,
) -> list[str]:
    """torchrun for one machine of a run across `nnodes` machines: start the same command,
    with the same `rendezvous_endpoint` (HOST:PORT of one of them) and `rendezvous_id`, on
    each, all pointing at one run folder on shared storage.

    The c10d rendezvous needs no node rank: the machines meet at the endpoint and are
    numbered there (torchrun ignores `--node_rank` with it), so every machine runs the same
    line. The machine whose address is the endpoint's host keeps the rendezvous store. Which
    one gets global rank 0 (logs to MLflow, writes checkpoints) is decided at the meeting,
    so each must reach the tracking server and the run folder. `local_addr` is the address
    the others reach this machine at (default: its fully qualified host name)."""
    placement = ["--nnodes", str(nnodes), "--nproc_per_node", str(nproc_per_node)]
    placement += ["--rdzv_backend", "c10d", "--rdzv_endpoint", rendezvous_endpoint]
    placement += ["--rdzv_id", rendezvous_id]
    placement += ["--local_addr", local_addr] if local_addr else []
    return _torchrun(placement, config_file, run_dir, mlflow_run_id)


def _torchrun(
    placement: list[str], config_file: Path, run_dir: Path, mlflow_run_id: str | None
) -> list[str]:
    """`torchrun PLACEMENT -m pipelines.train_worker ...` with this Python (`torchrun` is
    `python -m torch.distributed.run`); PLACEMENT says where the processes run."""
    command = [sys.executable, "-m", "torch.distributed.run", *placement]
    command += ["-m", "pipelines.train_worker", str(config_file), str(run_dir)]
    return command + (["--mlflow-run-id", mlflow_run_id] if mlflow_run_id else [])


@task(name="train-on-processes")
def train_on_processes(config: TrainConfig, tokens: Path, run_id: str) -> TrainResult:
    """Run the loop in `config.devices` processes under torchrun (DDP) and wait for them.

    torchrun starts the processes, gives each its rank, and stops them all if one fails;
    SIGTERM sent to it reaches every process, which then saves and stops together."""
    run_dir = config.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "train-config.json"
    config_file.write_text(config.model_copy(update={"tokens": tokens}).model_dump_json())
    (run_dir / RESULT_FILE).unlink(missing_ok=True)
    command = torchrun_command(config_file, run_dir, config.devices, run_id)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (run_dir / RESULT_FILE).is_file():
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        reason = errors[0].removeprefix("error: ") if errors else done.stderr.strip()[-2000:]
        raise TrainingError(f"training under torchrun failed ({done.returncode}): {reason}")
    record = json.loads((run_dir / RESULT_FILE).read_text())
    for key in ("run_dir", "last_checkpoint", "best_checkpoint"):
        record[key] = Path(record[key]) if record[key] else None
    return TrainResult(**record)


def step_metrics(metrics: StepMetrics) -> dict[str, float]:
    """One optimizer step's measurements under their MLflow names."""
    named = {
        TRAIN_LOSS: metrics.loss,
        TRAIN_LEARNING_RATE: metrics.learning_rate,
        TRAIN_GRAD_NORM: metrics.grad_norm,
        TRAIN_TOKENS_PER_S: metrics.tokens_per_s,
    }
    if metrics.mfu is not None:
        named[TRAIN_MFU] = metrics.mfu
    return named


def log_loss_curve(run_id: str, vocab_size: int) -> None:
    """The loss curve, drawn from what MLflow recorded (whichever process logged it)."""
    client = MlflowClient()
    train_points = [(m.step, m.value) for m in client.get_metric_history(run_id, TRAIN_LOSS)]
    val_points = [(m.step, m.value) for m in client.get_metric_history(run_id, VAL_LOSS)]
    with tempfile.TemporaryDirectory() as tmp:
        chart = loss_curve(
            sorted(train_points), sorted(val_points), Path(tmp) / "loss.png", vocab_size=vocab_size
        )
        client.log_artifact(run_id, str(chart), "charts")


def name_for_data(name: str, val_data: str) -> str:
    """`name` when it is new or its validation data is `val_data`; else the name for that
    data, `<name>-data-<val_data[:8]>` (see the module: `best` compares like with like)."""
    try:
        held = MlflowClient(mlflow_tracking_uri()).get_registered_model(name).tags.get(VAL_DATA_TAG)
    except mlflow.exceptions.MlflowException:  # no such registered model yet
        return name
    return name if held in (None, val_data) else f"{name}-data-{val_data[:8]}"


def register(
    result: TrainResult, name: str, val_data: str = "", model_id: str | None = None
) -> int:
    """Register the final checkpoint (logged model `model_id`, logged now when None) as a
    new version of `name`; alias it `best` when its validation loss beats the version
    holding `best` on the same validation data (`val_data`, a fingerprint); a holder
    measured on other data keeps `best` (the flow registers such a model under another
    name: see `name_for_data`).

    MLflow reserves the alias `latest`: `models:/<name>/latest` always means the newest
    version, which is this one, so it needs no alias of ours."""
    client = MlflowClient(mlflow_tracking_uri())
    aliases = []
    if result.val_loss is not None:
        try:
            holder = client.get_model_version_by_alias(name, BEST_ALIAS)
            # A loss on other validation data says nothing about this one: `best` stays.
            # (A holder registered before versions carried their data is compared as is.)
            same_data = holder.tags.get(VAL_DATA_TAG, "") in ("", val_data)
            holder_loss = float(holder.tags.get(VAL_LOSS_TAG, "inf")) if same_data else -math.inf
        except mlflow.exceptions.MlflowException:  # no model, or no version aliased best
            holder_loss = math.inf
        if result.val_loss < holder_loss:
            aliases.append(BEST_ALIAS)
    if model_id is None:
        assert result.last_checkpoint is not None
        model_id = log_checkpoint_model(result.last_checkpoint)
    version = register_logged_model(model_id, name, aliases)
    if val_data:
        client.set_model_version_tag(name, version.version, VAL_DATA_TAG, val_data)
        if VAL_DATA_TAG not in client.get_registered_model(name).tags:
            client.set_registered_model_tag(name, VAL_DATA_TAG, val_data)
    if result.val_loss is not None:
        client.set_model_version_tag(name, version.version, VAL_LOSS_TAG, str(result.val_loss))
    return int(version.version)


def run_train(config: TrainConfig) -> TrainFlowResult:
    """Run the flow (the CLI's entry point). The run folder is locked before the flow
    starts, so that a second run into it is one line, not a failed flow run."""
    with folder_lock(config.run_dir()):
        return train_flow(config)
