"""The `preferences` flow: sample two or more models, collect comparisons, report win rates.

    make (or reuse) the batch -> collect votes -> analyse -> log to MLflow and export

Collecting is either people on the comparison page (started here, or reused when it is
already running), waiting until `target_votes` comparisons are in or the deadline
passes; or, for demos, the simulated judge. The batch's name is derived from the
config, and its target and deadline are stored with it, so running the same config
again after a crash or a restart picks up the same batch and goes on waiting for the
same end.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines.comparison_server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    default_database_url,
    exposure_warning,
    invite_link,
    start_page,
)
from pipelines.failure_hooks import notify_failure
from pipelines.model_refs import is_registered, resolve_model
from pipelines.preference_records import annotator_table, summary_metrics, win_rate_table
from pipelines.retries import retry_if_transient
from pipelines.tracking import describe, log_metrics_batch, tracked_run
from pipelines.workspace import workspace_dir
from reports.mlflow_names import JUDGE_REFERENCE_TAG, JUDGE_TAG, WIN_RATES_TABLE
from reports.preference_charts import win_rate_chart
from tasks.encode.token_shards import TOKENIZER_DIR, read_meta
from tasks.fingerprint import fingerprint_path, model_fingerprint
from tasks.preferences.batches import (
    BatchSpec,
    count_comparisons,
    create_batch,
    preference_pairs,
    vote_records,
)
from tasks.preferences.continuations import ContinuationSettings, sample_continuations
from tasks.preferences.export import export_results
from tasks.preferences.judge import BigramSurprise, Surprise, judge_batch
from tasks.preferences.prompts import DEMO_PROMPTS, read_prompts
from tasks.preferences.store import Batch, PreferenceError, invite, open_database
from tasks.preferences.summary import Judge, model_labels, short_labels, summarise


class PreferencesConfig(BaseModel):
    """What to compare, how to sample it, who judges, and when collection ends."""

    models: list[str] = Field(
        min_length=2,
        description="checkpoint folders, hub ids, or registered models (models:/NAME@ALIAS, "
        "models:/NAME/VERSION)",
    )
    labels: list[str] | None = Field(
        None, description="names shown for the models, e.g. base, tuned (default: from paths)"
    )
    prompts: Path = Field(DEMO_PROMPTS, description="prompts file (.txt, .jsonl) or saved dataset")
    n: int = Field(200, ge=1, description="prompts to use (the file's first n)")
    batch: str | None = Field(
        None, min_length=1, max_length=200, description="batch name (default: from this config)"
    )
    tokenizer: str | None = Field(None, description="tokenizer (default: each model's own)")
    seed: int = 0
    max_new_tokens: int = Field(48, ge=1)
    min_new_tokens: int = Field(
        0, ge=0, description="no end-of-text before this many tokens: no empty continuations"
    )
    temperature: float = Field(1.0, ge=0)
    top_k: int | None = Field(40, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    repeat_fraction: float = Field(0.1, ge=0, le=1, description="items shown twice")
    gold_fraction: float = Field(0.1, ge=0, le=1, description="extra items with a known answer")
    judge: Judge = Field("people", description="people (the web page) or simulated (demos)")
    reference_model: str | None = Field(
        None, description="simulated judge's model (default: first)"
    )
    reference_tokens: list[Path] = Field(
        [],
        description="simulated judge: score with token bigram models of these token shards "
        "(e.g. each model's training data), mixed with equal weights: a reference that is "
        "neither compared model",
    )
    annotators: int = Field(3, ge=0, description="invite links to make for a new batch")
    target_votes: int | None = Field(None, ge=1, description="default: every comparison once")
    deadline_hours: float = Field(72.0, gt=0, description="stop waiting after this long")
    poll_seconds: float = Field(10.0, gt=0)
    database: str | None = Field(None, description="SQLAlchemy URL (default: workspace SQLite)")
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)

    @model_validator(mode="after")
    def _distinct_models(self) -> PreferencesConfig:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models: compare different models, got {self.models}")
        if self.labels is not None and (
            len(self.labels) != len(self.models) or len(set(self.labels)) != len(self.labels)
        ):
            raise ValueError(f"labels: one distinct label per model, got {self.labels}")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens ({self.min_new_tokens}) is more than max_new_tokens "
                f"({self.max_new_tokens})"
            )
        return self

    def database_url(self) -> str:
        return self.database or default_database_url()

    def continuation_settings(self) -> ContinuationSettings:
        return ContinuationSettings(
            max_new_tokens=self.max_new_tokens,
            top_p=self.top_p,
            temperature=self.temperature,
            top_k=self.top_k,
            min_new_tokens=self.min_new_tokens,
        )

    def batch_name(self) -> str:
        """The given name, or one derived from everything that shapes the batch."""
        if self.batch:
            return self.batch
        shaping = self.model_dump(
            mode="json",
            include={
                "models",
                "n",
                "seed",
                "max_new_tokens",
                "temperature",
                "top_k",
                "top_p",
                "repeat_fraction",
                "gold_fraction",
                "tokenizer",
                "labels",
            },
        )
        if self.min_new_tokens:  # only when set: batches made before it keep their names
            shaping["min_new_tokens"] = self.min_new_tokens
        shaping["prompts"] = fingerprint_path(self.prompts)
        shaping["checkpoints"] = [model_fingerprint(m) for m in self.models]
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
        labels = "-vs-".join(model_labels(self.models, self.labels).values()).replace("/", "_")
        return f"{labels[:150]}-{digest[:8]}"  # the column holds 200 characters


def with_resolved_models(config: PreferencesConfig) -> PreferencesConfig:
    """`config` with each registered model (models:/...) replaced by its downloaded folder.

    The batch then records folders, which every later step (the simulated judge, tuning)
    loads as they are, and which keep naming the same version after an alias moves.
    Unless labels were given, a registered model is labelled by its reference
    (`gpt2lab@best`), which says more than the download folder's path."""
    named = [*config.models, config.reference_model or "", config.tokenizer or ""]
    if not any(is_registered(model) for model in named):
        return config
    labels = config.labels
    if labels is None and any(is_registered(m) for m in config.models):
        paths = [m for m in config.models if not is_registered(m)]
        plain = short_labels(paths) if paths else {}
        labels = [
            m.removeprefix("models:/") if is_registered(m) else plain[m] for m in config.models
        ]
    reference, tokenizer = config.reference_model, config.tokenizer
    return PreferencesConfig.model_validate(
        config.model_dump()
        | {
            "models": [resolve_model(m) for m in config.models],
            "labels": labels,
            "reference_model": resolve_model(reference) if reference else None,
            "tokenizer": resolve_model(tokenizer) if tokenizer else None,
        }
    )


class BatchReady(BaseModel):
    name: str
    made_now: bool
    invites_file: Path | None = None


class PreferencesResult(BaseModel):
    batch: str
    judge: Judge
    votes: int
    ended_by: str  # "target", "deadline" or "simulated"
    summary: dict[str, float]
    export: Path
    mlflow_run_id: str


# ---------------------------------------------------------------------------------------
# Tasks


@task(name="make-batch")
def make_batch(config: PreferencesConfig) -> BatchReady:
    """Reuse the batch of this name, or sample the models and lay out a new one."""
    from model import load_model, load_tokenizer

    config = with_resolved_models(config)
    prompts = read_prompts(config.prompts, config.n)  # a bad file fails here, with its line
    name = config.batch_name()
    engine = open_database(config.database_url())
    with Session(engine) as session, session.begin():
        existing = session.scalar(select(Batch).where(Batch.name == name))
        if existing is not None:
            if list(existing.models) != list(config.models):
                raise PreferenceError(
                    f"batch {name!r} already compares {existing.models}, not {config.models}: "
                    "choose another --batch name"
                )
            return BatchReady(name=name, made_now=False)
    settings = config.continuation_settings()

    def sample(model: str, prompts: list[str], seed: int) -> list[str]:
        network = load_model(model).eval()
        tokenizer = load_tokenizer(config.tokenizer or model)
        return sample_continuations(network, tokenizer, prompts, settings, seed)

    deadline = datetime.now(UTC) + timedelta(hours=config.deadline_hours)
    with Session(engine) as session, session.begin():
        spec = BatchSpec(
            name=name,
            models=config.models,
            prompts=prompts,
            seed=config.seed,
            repeat_fraction=config.repeat_fraction,
            gold_fraction=config.gold_fraction,
            settings={
                **settings.to_dict(),
                "prompts_file": str(config.prompts),
                "labels": config.labels,
            },
            target_votes=config.target_votes,
            deadline=deadline,
        )
        batch = create_batch(session, spec, sample)
        if batch.target_votes is None:  # every comparison judged once
            batch.target_votes = len(prompts) * len(config.models) * (len(config.models) - 1) // 2
        tokens = {
            f"annotator-{i + 1}": invite(session, batch, f"annotator-{i + 1}")
            for i in range(config.annotators)
        }
    engine.dispose()
    invites_file = write_invites(name, tokens, config) if tokens else None
    return BatchReady(name=name, made_now=True, invites_file=invites_file)


def write_invites(batch: str, tokens: dict[str, str], config: PreferencesConfig) -> Path:
    """The invite links, in a file only its owner can read: whoever has a link can vote."""
    import os

    folder = workspace_dir() / "preferences" / batch
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "invites.txt"
    base = f"http://{config.host}:{config.port}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        for name, token in tokens.items():
            out.write(f"{name}\t{invite_link(base, token)}\n")
    return path


@task(name="simulate-votes")
def simulate_votes(config: PreferencesConfig, batch_name: str) -> int:
    """The simulated judge votes on every item it has not voted on yet."""
    from model import load_model, load_tokenizer

    surprise: Surprise | BigramSurprise
    if config.reference_tokens:
        tokenizer = load_tokenizer(config.reference_tokens[0] / TOKENIZER_DIR)
        surprise = BigramSurprise.from_shards(config.reference_tokens, tokenizer)
    else:
        reference = config.reference_model or config.models[0]
        surprise = Surprise(load_model(reference), load_tokenizer(config.tokenizer or reference))
    engine = open_database(config.database_url())
    with Session(engine) as session, session.begin():
        batch = session.scalar(select(Batch).where(Batch.name == batch_name))
        added = judge_batch(session, batch, surprise)
    engine.dispose()
    return added


# It polls the preferences database for hours: a database server that restarts (or a
# network blip to it) must not end the wait; the wait resumes from the database's counts.
@task(
    name="wait-for-votes", retries=3, retry_delay_seconds=30, retry_condition_fn=retry_if_transient
)
def wait_for_votes(database_url: str, batch_name: str, poll_seconds: float) -> str:
    """Wait until the batch's target number of human comparisons is in, or its deadline has
    passed; both are read from the database, so a restarted flow waits for the same end.
    Returns what ended the wait: "target" or "deadline"."""
    logger = get_run_logger()
    engine = open_database(database_url)
    with Session(engine) as session:
        batch = session.scalar(select(Batch).where(Batch.name == batch_name))
        target, deadline = batch.target_votes or 1, batch.deadline
    if deadline is not None and deadline.tzinfo is None:  # SQLite returns naive UTC times
        deadline = deadline.replace(tzinfo=UTC)
    progress = create_progress_artifact(0.0, description=f"comparisons in for {batch_name}")
    last = -1
    try:
        while True:
            with Session(engine) as session:
                batch = session.scalar(select(Batch).where(Batch.name == batch_name))
                count = count_comparisons(session, batch)
            if count != last:
                logger.info("%s: %d of %d comparisons in", batch_name, count, target)
                update_progress_artifact(progress, min(100.0, 100.0 * count / target))
                last = count
            if count >= target:
                return "target"
            if deadline is not None and datetime.now(UTC) >= deadline:
                logger.info(
                    "%s: deadline %s passed with %d comparisons",
                    batch_name,
                    deadline.isoformat(timespec="minutes"),
                    count,
                )
                return "deadline"
            time.sleep(poll_seconds)
    finally:
        engine.dispose()


@task(name="report-batch")
def report_batch(
    database_url: str, batch_name: str, judge: Judge, ended_by: str, judge_reference: str = ""
) -> PreferencesResult:
    """Analyse one judge's votes, log them to MLflow and export the pairs and votes."""
    engine = open_database(database_url)
    with Session(engine) as session:
        batch = session.scalar(select(Batch).where(Batch.name == batch_name))
        if batch is None:
            raise PreferenceError(f"no batch named {batch_name!r} in {_safe(database_url)}")
        summary = summarise(session, batch, judge)
        simulated = judge == "simulated"
        pairs = preference_pairs(session, batch, simulated=simulated)
        votes = [v for v in vote_records(session, batch) if v["simulated"] == simulated]
        models, settings = list(batch.models), dict(batch.settings)
    engine.dispose()

    folder = workspace_dir() / "preferences" / batch_name / judge
    markdown = summary.markdown()
    export_results(folder, pairs, votes, {"summary.md": markdown})
    rows = [
        (f"{summary.labels[w.model]} vs {summary.labels[w.opponent]}", w.rate, w.low, w.high)
        for w in summary.win_rates
        if w.wins + w.losses + w.ties
    ]
    chart = None
    if rows:
        chart = win_rate_chart(rows, folder / "win_rates.png", title=f"{batch_name}: {judge} judge")

    lineage = {
        f"checkpoint.{label}": model_fingerprint(model) for model, label in summary.labels.items()
    }
    sampling = {f"sampling.{key}": value for key, value in settings.items()}
    params = {
        "batch": batch_name,
        "judge": judge,
        "models": json.dumps(models),
        "ended_by": ended_by,
        **sampling,
    }
    with tracked_run(
        "preferences",
        run_name=f"{batch_name} ({judge})",
        lineage=lineage,
        params=params,
        tags={
            JUDGE_TAG: judge,
            **({JUDGE_REFERENCE_TAG: judge_reference} if judge_reference else {}),
        },
    ) as run:
        log_metrics_batch(run, summary_metrics(summary))
        mlflow.log_table(win_rate_table(summary), WIN_RATES_TABLE)
        mlflow.log_table(annotator_table(summary), "annotators.json")
        mlflow.log_text(markdown, "summary.md")
        if chart is not None:
            mlflow.log_artifact(str(chart))
        mlflow.log_artifacts(str(folder / "pairs"), "pairs")
        mlflow.log_artifact(str(folder / "votes.jsonl"))
        describe(run.info.run_id, f"**Preferences** of batch `{batch_name}`.\n\n{markdown}")
    create_markdown_artifact(markdown, key="preferences", description=f"{batch_name} ({judge})")
    return PreferencesResult(
        batch=batch_name,
        judge=judge,
        votes=summary.votes,
        ended_by=ended_by,
        summary=summary_metrics(summary),
        export=folder,
        mlflow_run_id=run.info.run_id,
    )


def _safe(url: str) -> str:
    """A database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------
# Flows


@flow(name="preferences", on_failure=[notify_failure])
def preferences_flow(config: PreferencesConfig) -> PreferencesResult:
    logger = get_run_logger()
    config = with_resolved_models(config)  # models:/... -> folders, once for every step
    ready = make_batch(config)
    logger.info("batch %s: %s", ready.name, "made" if ready.made_now else "reused")
    if ready.invites_file is not None:
        logger.info("invite links (keep them private): %s", ready.invites_file)
    if config.judge == "simulated":
        added = simulate_votes(config, ready.name)
        logger.info("the simulated judge cast %d votes", added)
        ended_by = "simulated"
    else:
        if warning := exposure_warning(config.host):
            logger.warning(warning)
        url, started = start_page(config.database_url(), config.host, config.port)
        logger.info("comparison page %s at %s", "started" if started else "reused", url)
        ended_by = wait_for_votes(config.database_url(), ready.name, config.poll_seconds)
    reference = judge_reference(config) if config.judge == "simulated" else ""
    return report_batch(config.database_url(), ready.name, config.judge, ended_by, reference)


def judge_reference(config: PreferencesConfig) -> str:
    """What the simulated judge scores with, in words, for the run and the report."""
    if config.reference_tokens:
        sources = ", ".join(
            f"`{folder}` ({read_meta(folder).fingerprint[:12]})"
            for folder in config.reference_tokens
        )
        return (
            f"token bigram models of {sources}, mixed with equal weights (neither compared model)"
        )
    return f"the model `{config.reference_model or config.models[0]}`"


@flow(name="preferences-report")
def preferences_report_flow(
    batch: str, judge: Judge = "people", database: str | None = None
) -> PreferencesResult:
    """Analyse and log a batch as it stands now (no waiting)."""
    return report_batch(database or default_database_url(), batch, judge, "report")
