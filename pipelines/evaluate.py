"""The `evaluate` flow: run registered eval tasks on a model, next to the GPT-2 paper.

    load the model once -> each task: prompts -> outputs (cached) -> scores -> MLflow

One MLflow parent run per evaluation, with a nested run per task (its metrics, the
task's settings, a per-example table and notes such as sacrebleu's signature); a JSON
results file; and a Prefect markdown artifact with the results beside the paper's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from model import GPT, Tokenizer, load_model, load_tokenizer
from pipelines.model_refs import Device, resolve_device, resolve_model
from pipelines.tracking import log_metrics_batch, tracked_run
from pipelines.workspace import workspace_dir
from reports.mlflow_names import EVAL_FROM_CACHE, EVAL_GENERATED, EVAL_SECONDS, EVAL_TASK_FILE
from tasks.evals.output_cache import OutputCache
from tasks.evals.registry import get_tasks
from tasks.evals.runner import TaskResult, evaluate_task
from tasks.fingerprint import model_fingerprint


class EvaluateConfig(BaseModel):
    model: str = Field(
        description="checkpoint folder, Hugging Face GPT-2 folder, hub id, or a registered "
        "model: models:/NAME@ALIAS or models:/NAME/VERSION"
    )
    tasks: list[str] = Field(min_length=1, description="eval task names (gpt2lab evals list)")
    tokenizer: str | None = Field(None, description="default: the model folder's own")
    limit: int | None = Field(None, ge=1, description="first N rows of each task")
    source: Literal["local", "hub"] = Field(
        "local", description="each task's shipped local data, or its Hugging Face dataset"
    )
    batch_size: int = Field(8, ge=1, description="prompts generated together")
    use_cache: bool = Field(True, description="reuse outputs of earlier identical runs")
    out: Path | None = Field(None, description="results JSON (default: workspace/evals/)")
    device: Device = Field("auto", description="auto: cuda when torch sees a GPU, else cpu")


class EvaluateResult(BaseModel):
    results: list[dict]
    results_file: Path
    mlflow_run_id: str


@lru_cache(maxsize=2)
def _loaded(model: str, tokenizer: str, fingerprint: str, device: str) -> tuple[GPT, Tokenizer]:
    del fingerprint  # part of the key: a changed folder is loaded again
    return load_model(model).to(device).eval(), load_tokenizer(tokenizer)


@task(name="eval-task", task_run_name="{name}")
def run_eval_task(
    name: str, config: EvaluateConfig, model_folder: str, fingerprint: str, device: str
) -> TaskResult:
    """One task on the model in `model_folder` (the config's model, resolved)."""
    (eval_task,) = get_tasks([name])
    tokenizer_source = resolve_model(config.tokenizer) if config.tokenizer else model_folder
    model, tokenizer = _loaded(model_folder, tokenizer_source, fingerprint, device)
    cache = OutputCache(workspace_dir() / "eval_cache.db") if config.use_cache else None
    try:
        return evaluate_task(
            eval_task,
            model,
            tokenizer,
            fingerprint,
            cache,
            limit=config.limit,
            batch_size=config.batch_size,
            source=config.source,
        )
    finally:
        if cache is not None:
            cache.close()


@flow(name="evaluate", log_prints=True)
def evaluate_flow(config: EvaluateConfig) -> EvaluateResult:
    logger = get_run_logger()
    get_tasks(config.tasks)  # unknown names fail here, before the model is loaded
    device = resolve_device(config.device)  # and asking for a missing GPU
    # A registered model (models:/...) becomes its downloaded folder; the fingerprint is
    # of the files, so the folder and the registered version share cached outputs.
    model_folder = resolve_model(config.model)
    fingerprint = model_fingerprint(model_folder)
    params = config.model_dump(mode="json", exclude={"out"})
    params |= {"device_used": device, "model_folder": model_folder}
    results: list[TaskResult] = []
    with tracked_run("evaluate", lineage={"checkpoint": fingerprint}, params=params) as parent:
        for name in config.tasks:
            result = run_eval_task(name, config, model_folder, fingerprint, device)
            logger.info(
                "%s: %s (%d generated, %d from cache, %.1f s)",
                name,
                _short(result.scores),
                result.generated,
                result.from_cache,
                result.seconds,
            )
            log_task_run(result, parent.info.run_id, fingerprint)
            results.append(result)
        out = config.out or workspace_dir() / "evals" / f"{_stamp()}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": config.model,
            "model_folder": model_folder,
            "device": device,
            "checkpoint": fingerprint,
            "results": [r.to_dict() for r in results],
        }
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        mlflow.log_artifact(str(out))
        table = results_markdown(results, config.model)
        mlflow.log_text(table, "results.md")
        create_markdown_artifact(table, key="evaluation", description="results vs GPT-2 paper")
    return EvaluateResult(
        results=[_summary(r) for r in results], results_file=out, mlflow_run_id=parent.info.run_id
    )


def log_task_run(result: TaskResult, parent_id: str, fingerprint: str) -> None:
    """A nested MLflow run for one task: metrics, settings, notes and every example."""
    params = {"task": result.task, "version": result.version, **result.settings}
    with tracked_run(
        "evaluate",
        run_name=result.task,
        parent_run_id=parent_id,
        lineage={"checkpoint": fingerprint},
        params=params,
        tags=result.notes,
    ) as run:
        metrics = {
            **result.scores,
            EVAL_GENERATED: result.generated,
            EVAL_FROM_CACHE: result.from_cache,
            EVAL_SECONDS: result.seconds,
        }
        log_metrics_batch(run, metrics)
        rows = result.examples
        if rows:
            mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, "examples.json")
        mlflow.log_dict(result.to_dict() | {"examples": len(rows)}, EVAL_TASK_FILE)


def results_markdown(results: list[TaskResult], model: str) -> str:
    """The results beside the GPT-2 paper's figures for its smallest model."""
    lines = [
        f"# Evaluation of `{model}`",
        "",
        "| task | metric | this model | GPT-2 paper |",
        "|---|---|---|---|",
    ]
    for result in results:
        for metric, value in result.scores.items():
            paper = result.paper.get(metric)
            shown = "" if paper is None else f"{paper:.4g}"
            lines.append(f"| {result.task} | {metric} | {value:.4g} | {shown} |")
    return "\n".join(lines) + "\n"


def _summary(result: TaskResult) -> dict:
    return {
        "task": result.task,
        "scores": result.scores,
        "paper": result.paper,
        "generated": result.generated,
        "from_cache": result.from_cache,
    }


def _short(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in list(scores.items())[:4])


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def run_evaluate(config: EvaluateConfig) -> EvaluateResult:
    return evaluate_flow(config)
