"""The training loop: GPT-2 pretraining and fine-tuning, resumable to the exact step.

One optimizer step (`batch_tokens` tokens in `passes` micro-batches):

    for each of this process's micro-batches:   x, y = random windows of the train split
        loss = model(x, y) / its micro-batches   (bf16 autocast on CUDA, fp32 on CPU)
        loss.backward()                          gradients add up over the micro-batches
    clip the gradient norm; set the scheduled learning rate; AdamW step

Under DDP (several processes started by torchrun, see pipelines/train_worker.py) the
micro-batches of a step are shared out between the processes and the gradients averaged
across them, so a step computes what one process would with the same global batch; only
the main process (rank 0) reports and writes checkpoints.

Every `eval_interval` steps the loss on a fixed set of validation windows; every
`checkpoint_interval` steps (and at the end, and when SIGTERM or Ctrl-C arrives) a
checkpoint. A run started again in the same folder continues from its newest checkpoint
and, on the CPU, repeats the uninterrupted run's losses exactly: the weights, AdamW's
moments, the schedule's step and every random generator (the data sampler's included)
are restored.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model import GPT, GPTConfig, load_model, load_tokenizer
from model.tokenizer import Tokenizer
from tasks.encode.loader import RandomWindows, sequential_windows
from tasks.encode.token_shards import TOKENIZER_DIR, TokenShardsError, read_meta
from tasks.train.checkpoints import (
    BEST,
    TrainingError,
    TrainingState,
    capture_rng,
    latest_checkpoint,
    load_training_state,
    prune,
    restore_rng,
    save_training_checkpoint,
    step_folder,
)
from tasks.train.schedule import learning_rate, make_optimizer
from tasks.train.settings import TrainSettings

CHECKPOINTS_DIR = "checkpoints"
# Settings that may change when a run is resumed: they do not alter what it computes.
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "eval_interval", "checkpoint_interval", "keep_last", "device", "compile"}
)


@dataclass(frozen=True)
class StepMetrics:
    """What one optimizer step measured (the flow logs these to MLflow under its names)."""

    loss: float  # mean over the step's micro-batches (and processes, under DDP)
    learning_rate: float
    grad_norm: float  # before clipping: a spike here warns of instability
    tokens_per_s: float  # the whole step, data loading included
    mfu: float | None = None  # model FLOPs utilisation, where the device's peak is known


@dataclass
class TrainResult:
    run_dir: Path
    steps: int  # optimizer steps completed, in total
    resumed_from: int  # the step this session started at (0 for a new run)
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_val_loss: float | None
    val_loss: float | None  # at the last evaluation
    train_losses: list[float] = field(default_factory=list)  # this session's, per step
    stopped: bool = False  # by a signal, before max_steps


@dataclass
class Callbacks:
    """Where progress goes (MLflow in the flow; tests collect it)."""

    on_step: Callable[[int, StepMetrics], None] | None = None
    # (step, validation loss, the model, e.g. to sample from)
    on_eval: Callable[[int, float, GPT], None] | None = None
    on_checkpoint: Callable[[int, Path], None] | None = None


# ---------------------------------------------------------------------------------------
# Setting up


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (one, or several under DDP)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> Processes:
        """From the initialised process group (see pipelines/train_worker.py), if any."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(torch.distributed.get_rank(), torch.distributed.get_world_size(), local)


def pick_device(setting: str, processes: Processes = Processes()) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", processes.local_rank)
    if setting == "auto":
        return torch.device("cpu")
    return torch.device(setting)


def _mean_over_processes(value: float, processes: Processes, device: torch.device) -> float:
    if processes.world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.item() / processes.world


def _any_process(flag: bool, processes: Processes, device: torch.device) -> bool:
    """True on every process if it is true on one (all must stop at the same step)."""
    if processes.world == 1:
        return flag
    tensor = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return bool(tensor.item())


def build_model(settings: TrainSettings, vocab_size: int) -> tuple[GPT, str]:
    """A new model from the preset (sized to the tokens' vocabulary), or the model to
    fine-tune. Returns the model and where it came from (for lineage)."""
    if settings.init_from is None:
        config = GPTConfig.preset(settings.model, vocab_size=vocab_size, dropout=settings.dropout)
        return GPT(config), f"preset:{settings.model}"
    loaded = load_model(settings.init_from)
    if loaded.config.dropout == settings.dropout:
        return loaded, settings.init_from
    # Dropout is fixed when the layers are built: build them again with the new rate.
    model = GPT(loaded.config.replace(dropout=settings.dropout))
    model.load_state_dict(loaded.state_dict())
    return model, settings.init_from


def check_compatible(settings: TrainSettings, model: GPT, tokens_vocab: int, world: int = 1) -> int:
    """Refuse impossible combinations before any work; returns the context length."""
    context = settings.context or model.config.block_size
    if context > model.config.block_size:
        raise TrainingError(
            f"context {context} is longer than the model's ({model.config.block_size} positions)"
        )
    if tokens_vocab > model.config.vocab_size:
        raise TrainingError(
            f"the tokens use a vocabulary of {tokens_vocab:,}, more than the model's "
            f"{model.config.vocab_size:,}: encode with the model's tokenizer"
        )
    try:
        settings.accumulation_steps(context, world)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    return context


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT (Ctrl-C), so the loop can save a checkpoint and
    stop between two steps instead of dying in the middle of one. Signal handlers can only
    be installed from the main thread; elsewhere (a Prefect task thread) the event simply
    never fires and the process's own handling applies."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, frame: Any) -> None:
        if requested.is_set():  # a second Ctrl-C: stop at once
            signal.default_int_handler(signum, frame)
        requested.set()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings_record(settings: TrainSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def _check_same_run(saved: dict[str, Any], settings: TrainSettings, checkpoint: Path) -> None:
    now = _settings_record(settings)
    for name, value in now.items():
        if name not in RESUMABLE_CHANGES and saved.get(name) != value:
            raise TrainingError(
                f"{checkpoint} belongs to a run with {name}={saved.get(name)!r}, not {value!r}: "
                "use another run folder, or the same settings to resume it"
            )


# ---------------------------------------------------------------------------------------
# The loop


def train(
    settings: TrainSettings, run_dir: Path, callbacks: Callbacks | None = None
) -> TrainResult:
    """Train (or resume training) into `run_dir`; see the module docstring."""
    processes = Processes.current()
    # Only the main process reports and writes checkpoints; the others compute.
    callbacks = (callbacks or Callbacks()) if processes.is_main else Callbacks()
    try:
        meta = read_meta(settings.tokens)
    except TokenShardsError as error:
        raise TrainingError(str(error)) from None
    torch.manual_seed(settings.seed)
    device = pick_device(settings.device, processes)
    model, origin = build_model(settings, meta.vocab_size)
    context = check_compatible(settings, model, meta.vocab_size, processes.world)
    passes = settings.accumulation_steps(context)  # per step, all processes together
    tokenizer: Tokenizer = load_tokenizer(Path(settings.tokens) / TOKENIZER_DIR)
    try:
        windows = RandomWindows(
            settings.tokens,
            context=context,
            batch_size=settings.micro_batch,
            seed=settings.seed,
            device=device,
        )
        # The first `eval_batches` batches only, the same at every evaluation: the rest of
        # the validation split is never read.
        batches = sequential_windows(
            settings.tokens, context=context, batch_size=settings.micro_batch, device=device
        )
        validation = list(itertools.islice(batches, settings.eval_batches))
    except TokenShardsError as error:
        raise TrainingError(str(error)) from None

    model.to(device)
    optimizer = make_optimizer(model, settings, device.type)
    checkpoints = run_dir / CHECKPOINTS_DIR
    start, best = 0, None
    resume_from = latest_checkpoint(checkpoints)
    if resume_from is not None:
        state = load_training_state(resume_from, model)
        _check_same_run(state.settings, settings, resume_from)
        model.to(device)
        optimizer.load_state_dict(state.optimizer)
        windows.load_state_dict(state.data)
        restore_rng(state.rng)
        start, best = state.step, state.best_val_loss

    bf16 = device.type == "cuda" and settings.precision in ("auto", "bf16")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left
        torch.backends.cudnn.allow_tf32 = True
    # Under DDP each process holds a replica; backward() averages the gradients of all
    # processes, so every replica takes the same optimizer step.
    wrapped = model
    if processes.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    forward = torch.compile(wrapped) if settings.compile else wrapped
    evaluate_with = model  # evaluation needs no gradient exchange
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    metadata = {"origin": origin, "tokens": meta.fingerprint, "tokenizer": tokenizer.fingerprint}
    flops_per_token = _flops_per_token(model, context)
    peak_flops = _peak_bf16_flops(device) if bf16 else None

    def checkpoint(step: int, folder: Path) -> Path:
        """Written by the main process; the others wait until it is on disk."""
        if not processes.is_main:
            torch.distributed.barrier()
            return folder
        state = TrainingState(
            step=step,
            optimizer=optimizer.state_dict(),
            data=windows.state_dict(),
            rng=capture_rng(),
            best_val_loss=best,
            settings=_settings_record(settings),
        )
        path = save_training_checkpoint(folder, model, tokenizer, state, {**metadata, "step": step})
        if callbacks.on_checkpoint:
            callbacks.on_checkpoint(step, path)
        if processes.world > 1:
            torch.distributed.barrier()
        return path

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        losses = []
        for x, y in validation:
            with autocast:
                losses.append(evaluate_with(x, y)[1].item())
        model.train()
        return sum(losses) / len(losses)

    result = TrainResult(
        run_dir=run_dir,
        steps=start,
        resumed_from=start,
        last_checkpoint=resume_from,
        best_checkpoint=checkpoints / BEST if best is not None else None,
        best_val_loss=best,
        val_loss=None,
    )
    model.train()
    with stop_requests() as stop:
        for step in range(start, settings.max_steps):
            started = time.perf_counter()
            rate = learning_rate(step, settings)
            for group in optimizer.param_groups:
                group["lr"] = rate
            loss_sum = 0.0
            mine = windows.batches_for_step(passes, processes.world, processes.rank)
            for i, (x, y) in enumerate(mine):
                # DDP exchanges gradients after the last pass only (no_sync before it).
                exchange = i == len(mine) - 1 or processes.world == 1
                with contextlib.nullcontext() if exchange else wrapped.no_sync():
                    with autocast:
                        _, loss = forward(x, y)
                    (loss / len(mine)).backward()
                loss_sum += loss.item()
            train_loss = _mean_over_processes(loss_sum / len(mine), processes, device)
            if not math.isfinite(train_loss):
                last = latest_checkpoint(checkpoints)
                raise TrainingError(
                    f"the training loss became {train_loss} at step {step + 1}; stopped "
                    f"without saving. Last good checkpoint: {last or 'none yet'}. Try a lower "
                    "learning_rate or grad_clip"
                )
            norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), settings.grad_clip or float("inf")
            ).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()  # honest timings
            seconds = time.perf_counter() - started
            done = step + 1
            tokens_per_s = settings.batch_tokens / seconds
            mfu = flops_per_token * tokens_per_s / peak_flops if peak_flops else None
            metrics = StepMetrics(train_loss, rate, norm, tokens_per_s, mfu)
            result.train_losses.append(train_loss)
            result.steps = done
            if callbacks.on_step:
                callbacks.on_step(done, metrics)

            last_step = done == settings.max_steps
            if done % settings.eval_interval == 0 or last_step:
                result.val_loss = evaluate()
                if callbacks.on_eval:
                    model.eval()
                    callbacks.on_eval(done, result.val_loss, model)
                    model.train()
                if best is None or result.val_loss < best:
                    best = result.val_loss
                    result.best_val_loss = best
                    result.best_checkpoint = checkpoint(done, checkpoints / BEST)
            stopping = _any_process(stop.is_set(), processes, device)
            if done % settings.checkpoint_interval == 0 or last_step or stopping:
                result.last_checkpoint = checkpoint(done, step_folder(checkpoints, done))
                if processes.is_main:
                    prune(checkpoints, settings.keep_last)
            if stopping and not last_step:
                result.stopped = True
                break
    return result


# ---------------------------------------------------------------------------------------
# Model FLOPs utilisation


def _flops_per_token(model: GPT, context: int) -> float:
    """Training FLOPs per token: 6 per parameter used in a matrix product (forward 2,
    backward 4; the position table is only looked up, the tied token embedding is also
    the output layer) plus attention's 12 * layers * width * context (PaLM, appendix B;
    as nanoGPT)."""
    c = model.config
    matmul_params = model.num_parameters() - model.transformer.wpe.weight.numel()
    return 6 * matmul_params + 12 * c.n_layer * c.n_embd * context


# Dense bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets (SXM parts).
_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def _peak_bf16_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in _PEAK_BF16.items() if key in name), None)
