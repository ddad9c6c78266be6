"""The `evaluate` flow: run registered eval tasks on a model, next to the GPT-2 paper.

    load the model once -> each task: prompts -> outputs (cached) -> scores -> MLflow

One MLflow parent run per evaluation, with a nested run per task (its metrics, the
task's settings, a per-example table and notes such as sacrebleu's signature); a JSON
results file; and a Prefect markdown artifact with the results beside the paper's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import mlflow
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from model import GPT, Tokenizer, load_model, load_tokenizer
from pipelines.contamination import (
    add_overlap,
    contamination_entry,
    contamination_task,
    log_contamination,
)
from pipelines.failure_hooks import notify_failure
from pipelines.mlflow_model import find_logged_model
from pipelines.model_refs import Device, resolve_device, resolve_model
from pipelines.retries import retry_if_transient
from pipelines.tracking import (
    describe,
    log_dataset,
    log_metrics_batch,
    log_model_input,
    tracked_run,
)
from pipelines.workspace import workspace_dir
from reports.mlflow_names import (
    EVAL_CI_HIGH_SUFFIX,
    EVAL_CI_LOW_SUFFIX,
    EVAL_FROM_CACHE,
    EVAL_GENERATED,
    EVAL_PAIRED_PREFIX,
    EVAL_RESULTS_TABLE,
    EVAL_ROWS,
    EVAL_SECONDS,
    EVAL_TASK_FILE,
    EVALUATE_KIND,
    FINGERPRINT_TAG,
    KIND_TAG,
    MODEL_PARAM,
    eval_summary_metric,
)
from tasks.evals.beside_paper import beside_paper, paper_sizes
from tasks.evals.contamination import Contamination
from tasks.evals.data import task_rows
from tasks.evals.output_cache import OutputCache
from tasks.evals.paired import paired_differences
from tasks.evals.registry import get_tasks
from tasks.evals.runner import TaskResult, evaluate_task
from tasks.evals.uncertainty import PairedDifference
from tasks.fingerprint import fingerprint_config, fingerprint_path, model_fingerprint


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
    baseline: str | None = Field(
        None,
        description="a second model scored on the same rows: each metric's paired "
        "difference (this model - baseline), its 95% interval and p-value",
    )
    stride: int | None = Field(
        None,
        ge=1,
        description="perplexity tasks: tokens between sliding windows (default: each "
        "task's own; the model's context = lm-evaluation-harness's disjoint windows)",
    )
    out: Path | None = Field(None, description="results JSON (default: workspace/evals/)")
    corpus: Path | None = Field(
        None, description="corpus folder (gpt2lab corpus): log each task's 8-gram overlap with it"
    )
    device: Device = Field("auto", description="auto: cuda when torch sees a GPU, else cpu")


class EvaluateResult(BaseModel):
    results: list[dict]  # one task_record per task
    results_file: Path
    mlflow_run_id: str


@lru_cache(maxsize=2)
def _loaded(model: str, tokenizer: str, fingerprint: str, device: str) -> tuple[GPT, Tokenizer]:
    del fingerprint  # part of the key: a changed folder is loaded again
    return load_model(model).to(device).eval(), load_tokenizer(tokenizer)


def _tokenizer_source(config: EvaluateConfig, model_folder: str) -> str:
    """The config's tokenizer (resolved, when it is a models:/ reference), else the model's."""
    return resolve_model(config.tokenizer) if config.tokenizer else model_folder


# A task's data can come from the Hugging Face Hub: a dropped download is worth a second
# try; a missing local file or a bad answer is not.
@task(
    name="eval-task",
    task_run_name="{name}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
)
def run_eval_task(
    name: str, config: EvaluateConfig, model_folder: str, fingerprint: str, device: str
) -> TaskResult:
    """One task on the model in `model_folder` (the config's model or baseline, resolved)."""
    (eval_task,) = get_tasks([name])
    if config.stride is not None and eval_task.kind == "perplexity":
        eval_task = replace(eval_task, stride=config.stride)
    model, tokenizer = _loaded(
        model_folder, _tokenizer_source(config, model_folder), fingerprint, device
    )
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


@flow(name="evaluate", on_failure=[notify_failure])
def evaluate_flow(config: EvaluateConfig) -> EvaluateResult:
    logger = get_run_logger()
    get_tasks(config.tasks)  # unknown names fail here, before the model is loaded
    contamination: dict[str, Contamination] = {}
    if config.corpus is not None:  # the GPT-2 paper's section 4: eval 8-grams in the corpus
        contamination = contamination_task(config.tasks, config.corpus, config.source, config.limit)
    device = resolve_device(config.device)  # and asking for a missing GPU
    # A registered model (models:/...) becomes its downloaded folder; the fingerprint is
    # of the files, so the folder and the registered version share cached outputs.
    model_folder = resolve_model(config.model)
    fingerprint = model_fingerprint(model_folder)
    baseline_folder = resolve_model(config.baseline) if config.baseline else None
    baseline_fingerprint = model_fingerprint(baseline_folder) if baseline_folder else None
    params = config.model_dump(mode="json", exclude={"out"})
    params |= {"device_used": device, "model_folder": model_folder}
    # Loaded once here (to count its parameters), then reused by every task from the cache.
    model, _ = _loaded(model_folder, _tokenizer_source(config, model_folder), fingerprint, device)
    parameters = model.num_parameters()
    results: list[TaskResult] = []
    records: list[dict] = []
    lineage = {"checkpoint": fingerprint}
    if baseline_fingerprint:
        lineage["baseline"] = baseline_fingerprint
    kind = {KIND_TAG: EVALUATE_KIND}
    with tracked_run("evaluate", lineage=lineage, params=params, tags=kind) as parent:
        model_id = scored_model(config.model, fingerprint, parent.info.run_id)
        for name in config.tasks:
            result = run_eval_task(name, config, model_folder, fingerprint, device)
            logger.info(
                "%s: %s over %d rows (%d generated, %d from cache, %.1f s)",
                name,
                _short(result.scores),
                result.rows,
                result.generated,
                result.from_cache,
                result.seconds,
            )
            paired = {}
            if baseline_folder and baseline_fingerprint:
                base = run_eval_task(name, config, baseline_folder, baseline_fingerprint, device)
                (eval_task,) = get_tasks([name])
                rows = task_rows(eval_task, config.source, config.limit)
                paired = paired_differences(eval_task, base, result, rows)
            if name in contamination:
                add_overlap(result.examples, contamination[name])
            record = task_record(result, parameters, paired, contamination.get(name))
            data = task_dataset(name, config)
            # The parent lists every task's rows too: its Dataset column shows the whole set.
            log_dataset(parent.info.run_id, name, data[0], data[1], "evaluation")
            log_task_run(
                result,
                record,
                parent.info.run_id,
                fingerprint,
                contamination.get(name),
                model=config.model,
                model_id=model_id,
                data=data,
            )
            results.append(result)
            records.append(record)
        out = config.out or workspace_dir() / "evals" / f"{_stamp()}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": config.model,
            "model_folder": model_folder,
            "device": device,
            "checkpoint": fingerprint,
            "parameters": parameters,
            "baseline": config.baseline,
            "results": [r.to_dict() | record for r, record in zip(results, records, strict=True)],
        }
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        mlflow.log_artifact(str(out))
        mlflow.log_table(results_table(records), EVAL_RESULTS_TABLE)
        table = results_markdown(records, config.model, config.baseline)
        mlflow.log_text(table, "results.md")
        create_markdown_artifact(table, key="evaluation", description="results vs GPT-2 paper")
        # The parent carries every task's scores, so evaluations line up in the compare view.
        summary = {
            eval_summary_metric(r["task"], metric): value
            for r in records
            for metric, value in r["scores"].items()
        }
        log_metrics_batch(parent, {k: v for k, v in summary.items() if math.isfinite(v)})
        describe(parent.info.run_id, f"**Evaluate** `{config.model}`.\n\n{table}")
    return EvaluateResult(results=records, results_file=out, mlflow_run_id=parent.info.run_id)


def scored_model(model: str, fingerprint: str, run_id: str) -> str:
    """The MLflow logged model the scores belong to: the one a train run logged for this
    checkpoint (same fingerprint), else an external model made now for `model` (a hub id,
    a folder nobody logged), so that every evaluation shows on a model's page."""
    found = find_logged_model(fingerprint)
    if found is not None:
        return found
    external = mlflow.create_external_model(
        name=Path(model).name or model, source_run_id=run_id, tags={FINGERPRINT_TAG: fingerprint}
    )
    return external.model_id


def task_dataset(name: str, config: EvaluateConfig) -> tuple[str, str]:
    """(where a task's rows come from, the fingerprint of the rows scored)."""
    (eval_task,) = get_tasks([name])
    data = eval_task.data
    if config.source == "hub" and data.hub_id:
        where = f"https://huggingface.co/datasets/{data.hub_id}"
    else:
        where = str(data.local)
    rows = task_rows(eval_task, config.source, config.limit)
    try:
        digest = fingerprint_config({"task": name, "rows": rows})
    except TypeError:  # a value JSON cannot hold: the file itself identifies the rows
        digest = fingerprint_path(data.local)
    return where, digest


def task_record(
    result: TaskResult,
    parameters: int,
    paired: Mapping[str, PairedDifference],
    contamination: Contamination | None = None,
) -> dict[str, Any]:
    """What the flow keeps of one task (task.json, the results file, the tables): its
    scores with n and intervals, the paper's figures and the one shown beside each score
    for this model's size, the paired comparison with a baseline and the overlap with a
    training corpus, if any."""
    beside = beside_paper(result.paper, parameters)
    return {
        "task": result.task,
        "version": result.version,
        "description": result.description,
        "scores": result.scores,
        "intervals": {k: list(v) for k, v in result.intervals.items()},
        "rows": result.rows,
        "notes": result.notes,
        "paper": {metric: asdict(figure) for metric, figure in result.paper.items()},
        "beside_paper": {metric: asdict(b) | {"label": b.label} for metric, b in beside.items()},
        "parameters": parameters,
        "paper_sizes": paper_sizes(),
        "vs_baseline": {metric: asdict(d) for metric, d in paired.items()},
        "generated": result.generated,
        "from_cache": result.from_cache,
        **contamination_entry(contamination),
    }


def log_task_run(
    result: TaskResult,
    record: dict[str, Any],
    parent_id: str,
    fingerprint: str,
    contamination: Contamination | None = None,
    *,
    model: str = "",
    model_id: str | None = None,
    data: tuple[str, str] | None = None,
) -> None:
    """A nested MLflow run for one task: metrics (each score, its interval and n),
    settings, notes, every example, the task's record (task.json) and, given one, its
    contamination by a corpus.

    `model` (the reference evaluated) is a param of the run; `model_id` (its MLflow logged
    model) and `data` (where the task's rows come from, their fingerprint) become the
    run's inputs, and the scores are linked to both: the model's page lists them."""
    params = {MODEL_PARAM: model, "task": result.task, "version": result.version}
    params |= result.settings
    with tracked_run(
        "evaluate",
        run_name=result.task,
        parent_run_id=parent_id,
        lineage={"checkpoint": fingerprint},
        params=params,
        tags=result.notes,
    ) as run:
        dataset = None
        if data is not None:
            dataset = log_dataset(run.info.run_id, result.task, data[0], data[1], "evaluation")
        if model_id is not None:
            log_model_input(run.info.run_id, model_id)
        scores = {k: v for k, v in result.scores.items() if math.isfinite(v)}
        log_metrics_batch(run, scores, model_id=model_id, dataset=dataset)
        metrics: dict[str, float] = {
            EVAL_ROWS: result.rows,
            EVAL_GENERATED: result.generated,
            EVAL_FROM_CACHE: result.from_cache,
            EVAL_SECONDS: result.seconds,
        }
        for name, (low, high) in result.intervals.items():
            metrics[name + EVAL_CI_LOW_SUFFIX] = low
            metrics[name + EVAL_CI_HIGH_SUFFIX] = high
        for name, diff in record["vs_baseline"].items():
            for part in ("delta", "low", "high", "p_value"):
                metrics[f"{EVAL_PAIRED_PREFIX}{name}/{part}"] = diff[part]
        log_metrics_batch(run, {k: v for k, v in metrics.items() if math.isfinite(v)})
        if contamination is not None:
            log_contamination(run, contamination)
        rows = result.examples
        if rows:
            mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, "examples.json")
        mlflow.log_dict(record | {"examples": len(rows)}, EVAL_TASK_FILE)


def results_table(records: list[dict[str, Any]]) -> dict[str, list]:
    """One row per task and metric, for MLflow's table view: the score, its interval, n,
    the paper's figure beside it and for which size."""
    columns: dict[str, list] = {
        name: []
        for name in (
            "task",
            "metric",
            "value",
            "ci95_low",
            "ci95_high",
            "n",
            "paper",
            "paper_size",
            "same_size",
            "note",
        )
    }
    for record in records:
        for metric, value in record["scores"].items():
            low, high = record["intervals"].get(metric, (None, None))
            beside = record["beside_paper"].get(metric, {})
            for name, cell in (
                ("task", record["task"]),
                ("metric", metric),
                ("value", value),
                ("ci95_low", low),
                ("ci95_high", high),
                ("n", record["rows"]),
                ("paper", beside.get("value")),
                ("paper_size", beside.get("paper_size", "")),
                ("same_size", beside.get("same_size")),
                ("note", beside.get("note", "")),
            ):
                columns[name].append(cell)
    return columns


def results_markdown(records: list[dict[str, Any]], model: str, baseline: str | None = None) -> str:
    """The results beside the GPT-2 paper's figure for the nearest model size."""
    lines = [f"# Evaluation of `{model}`", ""]
    if sizes := size_note(records):
        lines += [sizes + " Intervals: 95% bootstrap over the n rows.", ""]
    lines += [
        "| task | metric | this model (95% interval) | n | GPT-2 paper | note |",
        "|---|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in score_rows(records)),
    ]
    if baseline:
        lines += [
            "",
            f"## Against `{baseline}` on the same rows (paired)",
            "",
            "| task | metric | baseline | this model | difference (95% interval) | p |",
            "|---|---|---|---|---|---|",
        ]
        shown, same = paired_rows(records)
        lines += [f"| {' | '.join(row)} |" for row in shown]
        if same:
            lines += ["", same_note(same)]
    return "\n".join(lines) + "\n"


def size_note(records: list[dict[str, Any]]) -> str:
    """Which paper size the scores are compared with, and what "only" means ("" when no
    task has a paper figure)."""
    sizes = sorted({b["model_size"] for r in records for b in r["beside_paper"].values()})
    if not sizes:
        return ""
    return (
        f"{records[0]['parameters']:,} parameters: compared with the GPT-2 paper's "
        f"{', '.join(sizes)} model. “only”: the paper has that figure for another size "
        "alone, so it is not like-for-like."
    )


def score_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per score, as the CLI and results.md show it: task, metric, the score and
    its 95% interval, n, the paper's figure with its size, the note on that figure."""
    rows = []
    for record in records:
        for metric, value in record["scores"].items():
            low, high = record["intervals"].get(metric, (None, None))
            shown = f"{value:.4g}" if low is None else f"{value:.4g} ({low:.4g}–{high:.4g})"
            beside = record["beside_paper"].get(metric) or {}
            rows.append(
                [
                    record["task"],
                    metric,
                    shown,
                    str(record["rows"]),
                    beside.get("label", ""),
                    beside.get("note", ""),
                ]
            )
    return rows


def paired_rows(records: list[dict[str, Any]]) -> tuple[list[list[str]], int]:
    """The paired differences worth a row (task, metric, baseline, this model, difference
    with its interval, p), and how many metrics were left out because both models scored
    the same on every resample (the Lede-3 and Random-3 baselines, which never read the
    model, or two models that both get 0)."""
    shown, same = [], 0
    for record in records:
        for metric, d in record["vs_baseline"].items():
            if d["delta"] == 0 and d["low"] == 0 and d["high"] == 0:
                same += 1
                continue
            spread = "" if math.isnan(d["low"]) else f" ({d['low']:.4g}–{d['high']:.4g})"
            shown.append(
                [
                    record["task"],
                    metric,
                    f"{d['baseline']:.4g}",
                    f"{d['candidate']:.4g}",
                    f"{d['delta']:+.4g}{spread}",
                    f"{d['p_value']:.3g}",
                ]
            )
    return shown, same


def same_note(count: int) -> str:
    return (
        f"{count} more metrics are equal for both models on every resample (e.g. the "
        "Lede-3 and Random-3 baselines, which do not read the model): not shown."
    )


def _short(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in list(scores.items())[:4])


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def run_evaluate(config: EvaluateConfig) -> EvaluateResult:
    return evaluate_flow(config)
