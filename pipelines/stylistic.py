"""The `stylistic_preference` flow: Ziegler et al. (2019)'s sentiment experiment in
miniature, end to end through the project's real parts.

    made-up stories -> encode -> train the start model           (tasks.train)
    -> a comparison batch: two draws of the start model on prompts it never saw
    -> the comparison page (uvicorn on loopback) <- the scripted annotator votes over
       HTTP for the more positive continuation (VADER), with random mistakes
    -> for each number of comparisons k on the curve (e.g. 500, 1,000, 2,500, 5,000):
         the tune flow learns from the first k votes (reward model + DPO) and makes a
         batch, tuned vs start, on judging prompts used in no training;
         the scripted annotator judges it on the page; win rate, KL
    -> one MLflow run (experiment `stylistic-preference`) with the curve, and its report

The votes are cast by a program, and every place they are reported says so: the
annotator's name in the database, the tags of this run and of the tune runs, the report.
Everything goes under `<workspace>/experiments/stylistic/<name>/`; a finished step (the
start model, the votes, a tuned model) is reused when the flow runs again.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from model.atomic_files import write_file_atomically
from pipelines.comparison_server import default_database_url, start_page, stop_page
from pipelines.interrupts import RunInterrupted
from pipelines.tracking import tracked_run
from pipelines.tuning import TuningConfig, preference_tuning_flow
from pipelines.workspace import mlflow_tracking_uri, workspace_dir
from reports.mlflow_names import JUDGE_TAG
from reports.stylistic_report import (
    ANNOTATOR_KIND_TAG,
    ANNOTATOR_TAG,
    JUDGED,
    KL,
    REPORT_FILE,
    REWARD_ACCURACY,
    SCRIPTED,
    SECONDS,
    STYLISTIC_EXPERIMENT,
    USED,
    WIN_RATE,
    WIN_RATE_HIGH,
    WIN_RATE_LOW,
    curve_metric,
    stylistic_markdown,
)
from tasks.fingerprint import fingerprint_config, short
from tasks.preferences.scripted_annotator import SCRIPTED_VADER
from tasks.preferences.store import Annotator, Batch, hash_token
from tasks.tuning.dpo_training import DPOSettings
from tasks.tuning.reward_training import RewardSettings


class StylisticConfig(BaseModel):
    """The experiment's sizes and settings; the defaults are the documented 5,000 run."""

    model_config = ConfigDict(extra="forbid")

    comparisons: int = Field(5000, ge=20, description="votes to collect and learn from")
    curve: list[int] = Field(
        [500, 1000, 2500],
        description="smaller numbers of comparisons to tune on as well (those below comparisons)",
    )
    judge_prompts: int = Field(200, ge=10, description="prompts of each tuned-vs-start batch")
    mistake_rate: float = Field(
        0.1, ge=0, le=1, description="share of the annotator's votes that are random"
    )
    start_model: str | None = Field(
        None, description="a checkpoint trained on the stories (default: train one here)"
    )
    stories: int = Field(3000, ge=10, description="story openings the start model learns")
    story_repeats: int = Field(2, ge=1, description="stories per opening in its corpus")
    start_steps: int = Field(300, ge=1, description="training steps of the start model")
    start_batch: int = Field(16, ge=1, description="sequences per step of its training")
    start_context: int = Field(128, ge=16, description="tokens per sequence (a story: ~60)")
    max_new_tokens: int = Field(32, ge=4, description="length of the compared continuations")
    reward: RewardSettings = RewardSettings(learning_rate=1e-3, batch_size=16, eval_every=100)
    dpo: DPOSettings = DPOSettings(
        learning_rate=5e-4, beta=0.1, batch_size=16, eval_every=100, kl_max_new_tokens=32
    )
    seed: int = 0
    database: str | None = Field(None, description="SQLAlchemy URL (default: workspace SQLite)")
    name: str | None = Field(None, min_length=1, max_length=100, description="default: derived")

    @model_validator(mode="after")
    def _sizes_fit(self) -> StylisticConfig:
        from tasks.train.story_set import openings

        if any(k < 10 for k in self.curve):
            raise ValueError(f"curve: each size must be 10 or more, got {self.curve}")
        asked, made = self.stories + self.comparisons + self.judge_prompts, len(openings())
        if asked > made:
            raise ValueError(
                f"stories + comparisons + judge_prompts: {asked} distinct openings asked for, "
                f"the story word lists make {made}"
            )
        return self

    def sizes(self) -> list[int]:
        """The numbers of comparisons to tune on: the curve's, up to all of them."""
        return sorted({*(k for k in self.curve if k < self.comparisons), self.comparisons})

    def database_url(self) -> str:
        return self.database or default_database_url()

    def run_name(self) -> str:
        if self.name:
            return self.name
        shaping = self.model_dump(mode="json", exclude={"database", "name", "curve"})
        return f"stylistic-{self.comparisons}-{short(fingerprint_config(shaping), 8)}"


class CurvePoint(BaseModel):
    comparisons: int  # the first this many decided comparisons were asked for...
    used: int  # ...and this many there were (ties say nothing: fewer when votes ran out)
    win_rate: float
    low: float
    high: float
    judged: int
    reward_accuracy: float
    kl: float
    tuned_model: Path
    judge_batch: str


class StylisticResult(BaseModel):
    name: str
    folder: Path
    start_model: str
    batch: str
    votes: int
    points: list[CurvePoint]
    seconds: float
    report: str
    mlflow_run_id: str


# ---------------------------------------------------------------------------------------
# Tasks


@task(name="train-start-model")
def train_start_model(config: StylisticConfig, folder: Path) -> str:
    """The start model: a tiny GPT trained on made-up stories (reused when trained)."""
    import datasets

    from tasks.encode.corpus_source import open_corpus
    from tasks.encode.encode import EncodeSettings, TokenizerChoice, encode_corpus
    from tasks.train.loop import train
    from tasks.train.settings import TrainSettings
    from tasks.train.story_set import story_texts

    if config.start_model:
        return config.start_model
    done = folder / "start-model.json"
    if done.is_file():
        return json.loads(done.read_text())["checkpoint"]
    texts = story_texts(_openings(config).train, config.seed, config.story_repeats)
    corpus = folder / "stories"
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(corpus))
    encode_corpus(
        open_corpus(corpus),
        folder / "tokens",
        TokenizerChoice(train_tokenizer=True, vocab_size=512),
        EncodeSettings(val_fraction=0.05, shard_mb=1),
    )
    settings = TrainSettings(
        model="tiny",
        tokens=folder / "tokens",
        context=config.start_context,
        micro_batch=config.start_batch,
        batch_tokens=config.start_batch * config.start_context,
        max_steps=config.start_steps,
        warmup_steps=min(20, config.start_steps // 5),
        eval_interval=max(1, config.start_steps // 3),
        checkpoint_interval=config.start_steps,
        seed=config.seed,
        device="cpu",
    )
    result = train(settings, folder / "start-training")
    if result.stopped:  # by Ctrl-C or SIGTERM: saved, to go on from there next time
        raise RunInterrupted(f"training the start model stopped at step {result.steps}")
    checkpoint = str(result.last_checkpoint)
    write_file_atomically(done, json.dumps({"checkpoint": checkpoint}))
    return checkpoint


def _openings(config: StylisticConfig):
    from tasks.train.story_set import split_openings

    return split_openings(config.stories, config.comparisons, config.judge_prompts, config.seed)


def _write_prompts(prompts: list[str], path: Path) -> Path:
    write_file_atomically(path, "".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


@task(name="make-comparison-batch")
def make_comparison_batch(config: StylisticConfig, start_model: str, name: str) -> str:
    """A batch of two draws of the start model on each comparison prompt, as Ziegler et
    al. compared samples of one policy. (A batch's models differ by name, and the page
    samples every model of a prompt with the same seed; so the second "model" is the
    start model under another name, sampled with another seed.)"""
    from model import load_model, load_tokenizer
    from tasks.preferences.batches import BatchSpec, create_batch
    from tasks.preferences.continuations import ContinuationSettings, sample_continuations
    from tasks.preferences.store import open_database

    second = f"{start_model}#second-draw"
    network, tokenizer = load_model(start_model).eval(), load_tokenizer(start_model)
    settings = ContinuationSettings(max_new_tokens=config.max_new_tokens, batch_size=32)

    def sample(model: str, prompts: list[str], seed: int) -> list[str]:
        seed += 1_000_003 if model == second else 0
        return sample_continuations(network, tokenizer, prompts, settings, seed)

    engine = open_database(config.database_url())
    with Session(engine) as session, session.begin():
        if session.scalar(select(Batch).where(Batch.name == name)) is None:
            spec = BatchSpec(
                name=name,
                models=[start_model, second],
                prompts=_openings(config).compare,
                seed=config.seed,
                repeat_fraction=0,
                gold_fraction=0,
                settings=settings.to_dict() | {"judge": SCRIPTED_VADER},
            )
            create_batch(session, spec, sample)
    engine.dispose()
    return name


def scripted_token(database_url: str, batch_name: str) -> str:
    """A fresh invite token for the batch's scripted annotator (made on first use). Only
    hashes are stored, so a rerun gives the same annotator a new token; it resumes where
    it stopped, since the page shows each annotator only the items they have not judged."""
    import secrets

    from tasks.preferences.store import invite, open_database

    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        batch = session.scalar(select(Batch).where(Batch.name == batch_name))
        annotator = session.scalar(
            select(Annotator).where(
                Annotator.batch_id == batch.id, Annotator.name == SCRIPTED_VADER
            )
        )
        if annotator is None:
            token = invite(session, batch, SCRIPTED_VADER)
        else:
            token = secrets.token_urlsafe(24)
            annotator.token_hash = hash_token(token)
    engine.dispose()
    return token


@task(name="scripted-votes")
def scripted_votes(config: StylisticConfig, url: str, batch_name: str, seed: int) -> int:
    """The scripted annotator judges every item of the batch on the page; returns the
    votes it cast now."""
    from tasks.preferences.scripted_annotator import judge_on_page
    from tasks.preferences.sentiment import positivity

    logger = get_run_logger()
    token = scripted_token(config.database_url(), batch_name)

    def progress(votes: int) -> None:
        if votes % 500 == 0:
            logger.info("%s: %d votes cast", batch_name, votes)

    tally = judge_on_page(
        url, token, positivity, mistake_rate=config.mistake_rate, seed=seed, on_vote=progress
    )
    logger.info(
        "%s: %s voted %s (%d random mistakes)",
        batch_name,
        SCRIPTED_VADER,
        dict(tally.choices),
        tally.mistakes,
    )
    return tally.votes


@task(name="tuned-win-rate")
def tuned_win_rate(database_url: str, batch_name: str) -> tuple[float, float, float, int]:
    """The tuned model's win rate over the start model in the batch (ties count half), its
    Wilson 95% interval, and the number of votes it is over."""
    from tasks.preferences.analysis import win_rate
    from tasks.preferences.batches import batch_votes
    from tasks.preferences.store import open_database

    engine = open_database(database_url)
    with Session(engine) as session:
        batch = session.scalar(select(Batch).where(Batch.name == batch_name))
        tuned, start = batch.models  # the tune flow's order: tuned first
        rate = win_rate(batch_votes(session, batch), tuned, start)
    engine.dispose()
    return rate.rate, rate.low, rate.high, rate.wins + rate.losses + rate.ties


@task(name="kl-on-judging-prompts")
def kl_on_judging_prompts(
    config: StylisticConfig, tuned: Path, start_model: str, prompts: list[str]
) -> float:
    """KL(tuned || start) in nats per continuation, on samples the tuned model writes for
    the judging prompts (see tasks.tuning.dpo_training.mean_kl for the estimator)."""
    import torch

    from model import load_model, load_tokenizer
    from tasks.tuning.dpo_training import mean_kl

    return mean_kl(
        load_model(str(tuned)).eval(),
        load_model(start_model).eval(),
        load_tokenizer(start_model),
        prompts,
        config.dpo,
        torch.device("cpu"),
    )


@contextmanager
def comparison_page(database_url: str) -> Iterator[str]:
    """The real comparison page (uvicorn, its own process) on a free loopback port, for
    the length of the block."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url, _ = start_page(database_url, "127.0.0.1", port)
    try:
        yield url
    finally:
        stop_page(port)


def _mark_scripted(run_id: str) -> None:
    """Tag a tune run whose votes a script cast, as this experiment's own run is."""
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    client.set_tag(run_id, ANNOTATOR_TAG, SCRIPTED_VADER)
    client.set_tag(run_id, ANNOTATOR_KIND_TAG, SCRIPTED)


# ---------------------------------------------------------------------------------------
# The flow


@flow(name="stylistic_preference")
def stylistic_flow(config: StylisticConfig) -> StylisticResult:
    logger = get_run_logger()
    began = time.monotonic()
    name = config.run_name()
    folder = workspace_dir() / "experiments" / "stylistic" / name
    folder.mkdir(parents=True, exist_ok=True)
    database = config.database_url()
    judging = _openings(config).judge
    judge_prompts = _write_prompts(judging, folder / "judge-prompts.jsonl")
    start_model = train_start_model(config, folder)
    logger.info("start model: %s", start_model)
    batch = make_comparison_batch(config, start_model, f"{name}-comparisons")
    tags = {ANNOTATOR_TAG: SCRIPTED_VADER, ANNOTATOR_KIND_TAG: SCRIPTED, JUDGE_TAG: SCRIPTED}
    params = config.model_dump(mode="json") | {"start_model": start_model, "batch": batch}
    points: list[CurvePoint] = []
    # The tune flow opens MLflow runs of its own, so this run is opened at the end, when
    # there is something to log, rather than held open around them.
    with comparison_page(database) as url:
        logger.info("comparison page at %s", url)
        votes = scripted_votes(config, url, batch, config.seed)
        logger.info("%d votes cast on %s", votes, batch)
        for size in config.sizes():
            points.append(
                tune_and_judge(config, url, batch, start_model, judge_prompts, judging, size)
            )
    seconds = time.monotonic() - began
    metrics = {k: v for p in points for k, v in _point_metrics(p).items()} | {SECONDS: seconds}
    report = stylistic_markdown(metrics, {k: str(v) for k, v in params.items()}, tags)
    with tracked_run(STYLISTIC_EXPERIMENT, run_name=name, params=params, tags=tags) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_text(report, REPORT_FILE)
    write_file_atomically(folder / REPORT_FILE, report)
    return StylisticResult(
        name=name,
        folder=folder,
        start_model=start_model,
        batch=batch,
        votes=votes,
        points=points,
        seconds=seconds,
        report=report,
        mlflow_run_id=run.info.run_id,
    )


def tune_and_judge(
    config: StylisticConfig,
    url: str,
    batch: str,
    start_model: str,
    judge_prompts: Path,
    judging: list[str],
    size: int,
) -> CurvePoint:
    """One point of the curve: the tune flow learns from the first `size` comparisons and
    makes a tuned-vs-start batch on the judging prompts; the scripted annotator judges it."""
    logger = get_run_logger()
    name = f"{config.run_name()}-tuned-{size}"
    tuning = TuningConfig(
        batch=batch,
        database=config.database,
        start_model=start_model,
        seed=config.seed,
        device="cpu",
        reward=config.reward,
        dpo=config.dpo,
        compare="people",  # judged here, on the page, by the scripted annotator
        compare_prompts=judge_prompts,
        compare_n=config.judge_prompts,
        max_comparisons=size,
        judge=SCRIPTED_VADER,  # the page took its votes as any invited annotator's
        annotators=0,
        name=name,
    )
    tuned = preference_tuning_flow(tuning)
    _mark_scripted(tuned.mlflow_run_id)
    scripted_votes(config, url, tuned.new_batch, config.seed + size)
    rate, low, high, judged = tuned_win_rate(config.database_url(), tuned.new_batch)
    point = CurvePoint(
        comparisons=size,
        used=tuned.comparisons,
        win_rate=rate,
        low=low,
        high=high,
        judged=judged,
        reward_accuracy=tuned.reward_model.held_out["accuracy"],
        kl=kl_on_judging_prompts(config, tuned.policy.path, start_model, judging),
        tuned_model=tuned.policy.path,
        judge_batch=tuned.new_batch,
    )
    logger.info(
        "%d comparisons: tuned wins %.3f (%.3f-%.3f, n=%d), reward model %.3f, KL %.2f",
        size,
        rate,
        low,
        high,
        judged,
        point.reward_accuracy,
        point.kl,
    )
    return point


def _point_metrics(point: CurvePoint) -> dict[str, float]:
    values = {
        USED: point.used,
        WIN_RATE: point.win_rate,
        WIN_RATE_LOW: point.low,
        WIN_RATE_HIGH: point.high,
        JUDGED: point.judged,
        REWARD_ACCURACY: point.reward_accuracy,
        KL: point.kl,
    }
    return {curve_metric(point.comparisons, k): v for k, v in values.items()}
