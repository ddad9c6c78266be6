"""The `preference_tuning` flow: learn from a batch's votes, then ask people again.

    a batch's decided votes -> split by prompt (train / held out)
      -> reward model (GPT-2 + scalar head)   held-out pairwise accuracy
      -> DPO: the start model tuned against a frozen copy of itself
                                              held-out margins, accuracy, KL
      -> the reward model scores both models' samples on the held-out prompts
      -> a new comparison batch: tuned vs start, on the batch's prompts

The last step closes the loop of "Fine-Tuning Language Models from Human Preferences":
only new comparisons, made by people who do not know which side is which, say whether
the tuning worked. By default the flow opens that batch and prints its invite links;
with `compare = "simulated"` (demos, tests) the scripted judge fills and reports it.

Everything goes under `<workspace>/tuning/<name>/`, where the name is derived from the
batch, the votes used and the settings. A step whose output is already there is not
done again, so a run stopped during DPO goes on from DPO. MLflow: one run in the
`preference-tuning` experiment, tagged with its lineage (the batch, a fingerprint of the
votes, the start checkpoint), with a child run for each model trained.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import mlflow
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from model.atomic_files import write_file_atomically
from pipelines.comparison_server import default_database_url
from pipelines.failure_hooks import notify_failure
from pipelines.mlflow_model import (
    link_metric,
    log_checkpoint_model,
    log_checkpoint_reference,
    model_tags,
)
from pipelines.preferences import (
    PreferencesConfig,
    make_batch,
    report_batch,
    simulate_votes,
)
from pipelines.tracking import log_metrics_batch, tracked_run
from pipelines.workspace import mlflow_tracking_uri, workspace_dir
from reports.mlflow_names import (
    BATCH_TAG,
    FOLLOWUP_BATCH_TAG,
    JUDGE_TAG,
    PREFERENCE_TUNING_EXPERIMENT,
    VAL_LOSS,
    WIN_RATE_PREFIX,
    lineage_tag,
    pair_name,
)
from tasks.fingerprint import fingerprint_config, model_fingerprint, short
from tasks.preferences.store import open_database
from tasks.tuning.comparisons import (
    BatchComparisons,
    comparisons_from_batch,
    split_by_prompt,
)
from tasks.tuning.dpo_training import DPOSettings
from tasks.tuning.loop import LoopSettings, OnMetrics, clear_progress, measured_from
from tasks.tuning.reward_training import RewardSettings


class TuningConfig(BaseModel):
    """Which votes to learn from, how to train on them, and who judges the result."""

    model_config = ConfigDict(extra="forbid")

    batch: str = Field(min_length=1, description="the comparison batch whose votes to learn from")
    database: str | None = Field(None, description="SQLAlchemy URL (default: workspace SQLite)")
    allow_simulated: bool = Field(
        False, description="train on the simulated judge's votes when no person has voted"
    )
    start_model: str | None = Field(
        None, description="the model to tune (default: the batch's first model)"
    )
    held_out_fraction: float = Field(0.2, gt=0, lt=1, description="share of prompts held out")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    reward: RewardSettings = RewardSettings()
    dpo: DPOSettings = DPOSettings()
    compare: Literal["people", "simulated"] = Field(
        "people", description="who judges tuned vs start: people (invite links) or simulated"
    )
    compare_n: int | None = Field(None, ge=1, description="prompts in the new batch (default: all)")
    compare_prompts: Path | None = Field(
        None, description="prompts of the new batch (default: the batch's own)"
    )
    max_comparisons: int | None = Field(
        None, ge=1, description="learn from the first N decided comparisons only (learning curves)"
    )
    judge: str | None = Field(
        None,
        min_length=1,
        description="who cast the votes, where a script voted on the page as an invited "
        "annotator (its name replaces 'people' in tags and summaries)",
    )
    annotators: int = Field(3, ge=0, description="invite links for the new batch")
    name: str | None = Field(
        None, min_length=1, max_length=120, description="run name and folder (default: derived)"
    )

    def database_url(self) -> str:
        return self.database or default_database_url()


class TrainedModel(BaseModel):
    path: Path
    steps: int
    held_out: dict[str, float]
    cached: bool  # True: found from an earlier run, not trained now
    mlflow_run_id: str
    model_id: str | None = None  # its MLflow logged model


class TuningResult(BaseModel):
    name: str
    folder: Path
    comparisons: int
    reward_model: TrainedModel
    policy: TrainedModel
    sample_rewards: dict[str, float]  # mean reward of each model's held-out samples
    new_batch: str
    invites_file: Path | None
    win_rate: float | None  # the tuned model's, when the new batch was judged here
    mlflow_run_id: str


# ---------------------------------------------------------------------------------------
# Tasks


def _load(config: TuningConfig) -> BatchComparisons:
    engine = open_database(config.database_url())
    try:
        with Session(engine) as session:
            votes = comparisons_from_batch(
                session, config.batch, allow_simulated=config.allow_simulated
            )
    finally:
        engine.dispose()
    if config.max_comparisons is None or config.max_comparisons >= len(votes.comparisons):
        return votes
    # The first N, in the order they were voted: a learning curve's smaller runs see a
    # prefix of what the larger ones see. Their own fingerprint keeps their folders apart.
    first = votes.comparisons[: config.max_comparisons]
    digest = fingerprint_config({"votes": votes.fingerprint, "first": config.max_comparisons})
    return replace(votes, comparisons=first, fingerprint=digest)


def run_name(config: TuningConfig, votes_fingerprint: str, start_fingerprint: str) -> str:
    """The given name, or the batch's plus a digest of everything that shapes the result."""
    if config.name:
        return config.name
    shaping = config.model_dump(
        mode="json", include={"held_out_fraction", "seed", "reward", "dpo", "start_model"}
    )
    shaping |= {"votes": votes_fingerprint, "start": start_fingerprint}
    return f"{config.batch[:100]}-tuned-{short(fingerprint_config(shaping), 8)}".replace("/", "_")


class VotesSummary(BaseModel):
    """What the flow needs to know of the votes, without their texts."""

    judge: str  # whose votes: "people" or "simulated"
    votes: int
    comparisons: int
    train: int  # comparisons trained on
    held_out: int  # comparisons on held-out prompts
    fingerprint: str
    models: list[str]  # the batch's models
    prompts: list[str]  # the batch's prompts: the new batch's too


def check_votes(config: TuningConfig) -> VotesSummary:
    """Check the batch's votes before any model is loaded. (The command line calls this
    before starting the flow, so that bad input is one line.)"""
    votes = _load(config)
    split = split_by_prompt(votes.comparisons, config.held_out_fraction, config.seed)
    return VotesSummary(
        judge=config.judge or votes.judge,
        votes=votes.votes,
        comparisons=len(votes.comparisons),
        train=len(split.train),
        held_out=len(split.held_out),
        fingerprint=votes.fingerprint,
        models=votes.models,
        prompts=votes.prompts,
    )


load_comparisons = task(check_votes, name="load-comparisons")

# Below this many comparisons to train on, a reward model and DPO learn next to nothing
# that holds on new prompts: the tuned model barely moves (KL near 0) and held-out
# accuracy is chance give or take the noise of a handful of pairs. Ziegler et al. (2019)
# used 5,000 comparisons per task; a few hundred is the least that shows an effect here.
MIN_USEFUL_COMPARISONS = 100


def too_few_comparisons(votes: VotesSummary) -> str | None:
    """The warning for a run with too few comparisons to learn from, or None."""
    if votes.train >= MIN_USEFUL_COMPARISONS:
        return None
    return (
        f"only {votes.train} comparisons to train on: a reward model and DPO learn little "
        f"from fewer than {MIN_USEFUL_COMPARISONS} (expect KL near 0 and held-out accuracy "
        "near chance); collect more votes for a result that means something"
    )


def _device(config: TuningConfig):
    from tasks.train.loop import pick_device

    return pick_device(config.device)


@task(name="train-reward-model")
def train_reward_model_task(
    config: TuningConfig,
    start_model: str,
    folder: Path,
    parent_run_id: str,
    lineage: dict[str, str],
) -> TrainedModel:
    from model import load_model, load_tokenizer
    from model.reward import save_reward_model
    from tasks.tuning.reward_training import train_reward_model

    tokenizer = load_tokenizer(start_model)
    return _trained(
        folder / "reward-model",
        "reward-model",
        parent_run_id,
        config.reward,
        lambda on_metrics, progress: train_reward_model(
            load_model(start_model),
            tokenizer,
            _split(config),
            config.reward,
            device=_device(config),
            on_metrics=on_metrics,
            progress=progress,
        ),
        lambda result, path: save_reward_model(result.model, path, tokenizer),
        lineage | {"tokenizer": tokenizer.fingerprint},
        loadable=False,
    )


@task(name="train-dpo")
def train_dpo_task(
    config: TuningConfig,
    start_model: str,
    folder: Path,
    parent_run_id: str,
    lineage: dict[str, str],
) -> TrainedModel:
    from model import load_model, load_tokenizer, save_checkpoint
    from tasks.tuning.dpo_training import train_dpo

    metadata = {
        "tuned_from": start_model,
        "batch": config.batch,
        "method": "dpo",
        "beta": config.dpo.beta,
    }
    tokenizer = load_tokenizer(start_model)
    return _trained(
        folder / "policy",
        "dpo",
        parent_run_id,
        config.dpo,
        lambda on_metrics, progress: train_dpo(
            load_model(start_model),
            tokenizer,
            _split(config),
            config.dpo,
            device=_device(config),
            on_metrics=on_metrics,
            progress=progress,
        ),
        lambda result, path: save_checkpoint(
            result.policy.cpu(), path, metadata, tokenizer=tokenizer
        ),
        lineage | {"tokenizer": tokenizer.fingerprint},
        loadable=True,
    )


def _split(config: TuningConfig):
    return split_by_prompt(_load(config).comparisons, config.held_out_fraction, config.seed)


def _trained(
    output: Path,
    what: str,
    parent_run_id: str,
    settings: LoopSettings,
    train: Callable[[OnMetrics, Path], Any],
    save: Callable[[Any, Path], object],
    lineage: dict[str, str],
    loadable: bool,
) -> TrainedModel:
    """Train one model in its own child run (`train(on_metrics, progress)` returns the
    result) and save it (`save(result, output)`), or reuse the one already saved: models
    are written atomically, so a folder that is there is whole. Training saves progress
    in `<output>.progress/` as it goes, so a run that was stopped goes on from there.

    The saved model becomes an MLflow logged model of the run, tagged with its fingerprint
    and `lineage`, its final held-out measurement linked to it: with its weights when it
    is `loadable` (the tuned policy, a GPT that MLflow's text generator continues prompts
    with), else as a reference to its folder (the reward model, a scorer)."""
    logger = get_run_logger()
    summary = output.with_suffix(".json")
    if output.is_dir() and summary.is_file():
        logger.info("%s: reusing %s", what, output)
        return TrainedModel(**json.loads(summary.read_text()), cached=True)
    with tracked_run(
        PREFERENCE_TUNING_EXPERIMENT, run_name=what, parent_run_id=parent_run_id, params=settings
    ) as run:
        points: list[tuple[str, float, int]] = []

        bar = create_progress_artifact(0.0, description=f"{what}: share of training done")

        def on_metrics(step: int, metrics: dict[str, float]) -> None:
            points.extend((key, value, step) for key, value in metrics.items())
            if "epoch" in metrics:
                update_progress_artifact(bar, 100.0 * metrics["epoch"] / settings.epochs)
            if VAL_LOSS in metrics:  # a held-out measurement: worth a line in the log
                logger.info("%s step %d: %s", what, step, _short(metrics))
            if len(points) >= 500:
                log_metrics_batch(run, points)
                points.clear()

        progress = output.with_name(f"{output.name}.progress")
        if progress.is_dir():
            logger.info("%s: going on from the progress saved in %s", what, progress)
        result = train(on_metrics, progress)
        log_metrics_batch(run, points)
        save(result, output)
        clear_progress(progress)
        tags = model_tags(output, lineage)
        if loadable:  # logged at its step: MLflow links that step's metrics to it
            model_id = log_checkpoint_model(output, tags=tags, step=result.steps)
        else:
            model_id = log_checkpoint_reference(
                run.info.run_id, output, result.steps, tags, name=what
            )
            link_metric(run.info.run_id, VAL_LOSS, result.steps, model_id)
    trained = TrainedModel(
        path=output,
        steps=result.steps,
        held_out=result.held_out,
        cached=False,
        mlflow_run_id=run.info.run_id,
        model_id=model_id,
    )
    write_file_atomically(summary, trained.model_dump_json(exclude={"cached"}, indent=2))
    return trained


def _short(metrics: dict[str, float]) -> str:
    """The held-out measurement in a report (`loss/val`, `val/...`): "loss 0.612, ..."."""
    return ", ".join(f"{k} {v:.3f}" for k, v in measured_from(metrics).items())


@task(name="score-samples")
def score_samples(config: TuningConfig, start_model: str, folder: Path) -> dict[str, float]:
    """The reward model's mean score of the start and the tuned model's samples on the
    held-out prompts: the reward model's view of whether the tuning worked (people's view
    comes from the new batch)."""
    from model import load_model, load_tokenizer
    from model.reward import load_reward_model
    from tasks.preferences.continuations import ContinuationSettings, sample_continuations
    from tasks.tuning.reward_training import score_texts

    prompts = sorted({c.prompt for c in _split(config).held_out})[: config.dpo.kl_prompts]
    reward_model = load_reward_model(folder / "reward-model")
    tokenizer = load_tokenizer(start_model)
    settings = ContinuationSettings(max_new_tokens=config.dpo.kl_max_new_tokens)
    scores = {}
    for label, model in (("start", start_model), ("tuned", str(folder / "policy"))):
        texts = sample_continuations(load_model(model), tokenizer, prompts, settings, config.seed)
        rewards = score_texts(reward_model, tokenizer, list(zip(prompts, texts, strict=True)))
        scores[label] = sum(rewards) / len(rewards)
    return scores


@task(name="write-prompts")
def write_prompts(prompts: list[str], path: Path) -> Path:
    """The batch's prompts as JSON lines (a prompt may hold line breaks)."""
    write_file_atomically(path, "".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


# ---------------------------------------------------------------------------------------
# The flow


@flow(name="preference_tuning", on_failure=[notify_failure])
def preference_tuning_flow(config: TuningConfig) -> TuningResult:
    logger = get_run_logger()
    votes = load_comparisons(config)  # bad input fails here, before any model loads
    start_model = config.start_model or votes.models[0]
    start_fingerprint = model_fingerprint(start_model)
    name = run_name(config, votes.fingerprint, start_fingerprint)
    folder = workspace_dir() / "tuning" / name
    folder.mkdir(parents=True, exist_ok=True)
    logger.info(
        "%s: %d %s comparisons (%d to train on, %d held out) from batch %s",
        name,
        votes.comparisons,
        votes.judge,
        votes.train,
        votes.held_out,
        config.batch,
    )
    if warning := too_few_comparisons(votes):
        logger.warning(warning)

    lineage = {
        "batch": config.batch,
        "votes": votes.fingerprint,
        "checkpoint.start": start_fingerprint,
    }
    tags = {BATCH_TAG: config.batch, JUDGE_TAG: votes.judge}
    counts = {
        "comparisons": votes.comparisons,
        "train_comparisons": votes.train,
        "held_out_comparisons": votes.held_out,
    }
    params = config.model_dump(mode="json") | {"start_model": start_model} | counts
    with tracked_run(
        PREFERENCE_TUNING_EXPERIMENT, run_name=name, lineage=lineage, params=params, tags=tags
    ) as run:
        run_id = run.info.run_id
        reward_model = train_reward_model_task(config, start_model, folder, run_id, lineage)
        policy = train_dpo_task(config, start_model, folder, run_id, lineage)
        sample_rewards = score_samples(config, start_model, folder)
        metrics = {f"reward_model/{k}": v for k, v in reward_model.held_out.items()}
        metrics |= {f"dpo/{k}": v for k, v in policy.held_out.items()}
        metrics |= {f"sample_reward/{k}": v for k, v in sample_rewards.items()}
        mlflow.log_metrics(metrics)
        mlflow.set_tag(lineage_tag("checkpoint.tuned"), model_fingerprint(str(policy.path)))

    # The new batch has runs of its own (experiment `preferences`), so it is made after this
    # run has closed; its name and result are added to this run afterwards.
    compare = PreferencesConfig(
        models=[str(policy.path), start_model],
        labels=["tuned", "start"],
        prompts=config.compare_prompts or write_prompts(votes.prompts, folder / "prompts.jsonl"),
        n=config.compare_n or len(votes.prompts),
        judge=config.compare,
        reference_model=start_model,
        annotators=config.annotators,
        database=config.database,
        seed=config.seed,
    )
    ready = make_batch(compare)
    win_rate = None
    if config.compare == "simulated":
        simulate_votes(compare, ready.name)
        report = report_batch(compare.database_url(), ready.name, "simulated", "simulated")
        win_rate = report.summary.get(f"{WIN_RATE_PREFIX}{pair_name('tuned', 'start')}")
    summary = tuning_markdown(
        name, votes, reward_model, policy, sample_rewards, ready.name, config.compare, win_rate
    )
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    client.set_tag(run_id, FOLLOWUP_BATCH_TAG, ready.name)
    if win_rate is not None:
        client.log_metric(run_id, "followup/win_rate_tuned_simulated", win_rate)
    client.log_text(run_id, summary, "summary.md")
    write_file_atomically(folder / "summary.md", summary)
    create_markdown_artifact(summary, key="preference-tuning", description=name)
    return TuningResult(
        name=name,
        folder=folder,
        comparisons=votes.comparisons,
        reward_model=reward_model,
        policy=policy,
        sample_rewards=sample_rewards,
        new_batch=ready.name,
        invites_file=ready.invites_file,
        win_rate=win_rate,
        mlflow_run_id=run_id,
    )


def tuning_markdown(
    name: str,
    votes: VotesSummary,
    reward_model: TrainedModel,
    policy: TrainedModel,
    sample_rewards: dict[str, float],
    new_batch: str,
    judge: str,
    win_rate: float | None,
) -> str:
    rm, dpo = reward_model.held_out, policy.held_out
    lines = [
        f"# Preference tuning: {name}",
        "",
        f"{votes.comparisons} {votes.judge} comparisons: {votes.train} to train on, "
        f"{votes.held_out} on held-out prompts.",
        "",
        *([f"**Warning:** {warning}.", ""] if (warning := too_few_comparisons(votes)) else []),
        "| | held out |",
        "|---|---|",
        f"| reward model: pairwise accuracy | {rm['accuracy']:.3f} ({rm['pairs']:.0f} pairs) |",
        f"| DPO: implicit reward accuracy | {dpo['accuracy']:.3f} |",
        f"| DPO: reward margin (chosen - rejected) | {dpo['margin']:.3f} |",
        f"| DPO: KL(tuned ‖ start), nats per sample | {dpo['kl']:.3f} |",
        f"| reward of samples: start → tuned | {sample_rewards['start']:.3f} → "
        f"{sample_rewards['tuned']:.3f} |",
        "",
        f"New comparison batch, tuned vs start: `{new_batch}` ({judge} judge).",
    ]
    if win_rate is not None:
        lines.append(
            f"Tuned model's win rate by the simulated judge: {win_rate:.3f} "
            "(a scripted judge, not people)."
        )
    else:
        lines.append("People's verdict: `gpt2lab preferences report <batch>` once votes are in.")
    return "\n".join(lines) + "\n"
