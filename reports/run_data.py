"""What one end-to-end run recorded in MLflow, read into plain dataclasses.

An end-to-end run is a parent MLflow run (tag `gpt2lab.kind` = `end-to-end`) with one child
run per stage (tag `gpt2lab.stage`). Each child holds what that stage's own flow logs: the
corpus funnel, token counts, loss histories, evaluation scores, preference win rates. The
evaluate stage has a child run per task in turn.

`collect` reads all of it once; the renderers (run_report.py) then work on plain values and
never talk to MLflow, so they are easy to test and cannot change what was recorded.

A stage skipped because its result was cached still has a child run, tagged
`gpt2lab.cached` = `true`. Either its metrics were copied onto it, or its tag
`gpt2lab.cached_from` names the earlier run that holds them: then that run is read instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from reports.mlflow_names import (
    CACHED_FROM_TAG,
    CACHED_TAG,
    CONTAMINATION_PREFIX,
    DROP_REASONS_TABLE,
    DROPS_PREFIX,
    EVAL_BOOKKEEPING,
    EVAL_TASK_FILE,
    EVALUATE_KIND,
    FUNNEL_PREFIX,
    GIT_COMMIT_TAG,
    JUDGE_REFERENCE_TAG,
    JUDGE_TAG,
    KIND_TAG,
    LINEAGE_TAG_PREFIX,
    LOSS_HISTORIES,
    PAIR_SEPARATOR,
    PARENT_RUN_TAG,
    SAMPLES_FOLDER,
    SAMPLES_KEPT_TABLE,
    STAGE_TAG,
    STAGES,
    TOKENS_PREFIX,
    TRAINING_STAGES,
    VAL_LOSS,
    WIN_RATE_COLUMNS,
    WIN_RATE_HIGH_PREFIX,
    WIN_RATE_LOW_PREFIX,
    WIN_RATE_PREFIX,
    WIN_RATES_TABLE,
)

NOT_RUN = "not run"

# The small JSON tables worth reading per stage (the rest stay in MLflow, a click away).
TABLES = {
    "corpus": (DROP_REASONS_TABLE, SAMPLES_KEPT_TABLE),
    "preferences": (WIN_RATES_TABLE,),
}
SAMPLE_TEXT_LIMIT = 4000  # characters of the last training samples kept for the report
_CACHE_HOPS = 5  # a cached run may point at a run that was itself cached; stop at some point
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_FUNNEL_KEY = re.compile(re.escape(FUNNEL_PREFIX) + r"(\d+)_(.+)")

Points = list[tuple[int, float]]  # (step, value)


@dataclass
class EvalTaskRun:
    """One evaluation task's scores, their intervals, and the GPT-2 paper's figures."""

    task: str
    run_id: str
    scores: dict[str, float]
    # The paper's figure for each metric: {"by_size": {size: value}, "source", "note"}.
    paper: dict[str, dict[str, Any]]
    notes: dict[str, str] = field(default_factory=dict)  # e.g. sacrebleu's signature
    description: str = ""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95%
    rows: int | None = None  # how many rows were scored
    # The figure shown beside each metric, as the evaluate flow chose it for this model's
    # size (tasks/evals/beside_paper.py): model_size, paper_size, value, same_size, note.
    beside_paper: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: int | None = None  # the evaluated model's
    paper_sizes: dict[str, int] = field(default_factory=dict)  # size label -> parameters
    contamination: dict[str, float] = field(default_factory=dict)  # overlap with a corpus


UNKNOWN_SIZE = "size not recorded"


@dataclass(frozen=True)
class EvalRow:
    """One score as the tables show it: with its interval and the paper's figure."""

    task: str
    metric: str
    value: float
    low: float | None
    high: float | None
    rows: int | None
    paper: float | None
    paper_size: str  # "" when the paper has no figure for this metric
    same_size: bool  # the paper's figure is for the size this model is compared with
    note: str


@dataclass
class WinRate:
    """How often `model` beat `opponent` (ties count half), with a 95% interval."""

    model: str
    opponent: str
    rate: float
    low: float
    high: float
    wins: int | None = None  # None when only the metrics (not the table) were found
    losses: int | None = None
    ties: int | None = None
    both_bad: int | None = None

    @property
    def label(self) -> str:
        return f"{self.model} vs {self.opponent}"


@dataclass
class StageRun:
    """One stage of the run: its status and what it recorded."""

    stage: str
    status: str  # finished | failed | killed | running | scheduled | cached | not run
    run_id: str | None = None  # the stage's own child run
    data_run_id: str | None = None  # the run its data came from (an earlier one if cached)
    run_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the last value of each
    tags: dict[str, str] = field(default_factory=dict)
    histories: dict[str, Points] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> rows
    sample_text: str = ""  # training: what the model wrote at its last evaluation
    tasks: list[EvalTaskRun] = field(default_factory=list)  # evaluate: one per task
    note: str = ""  # e.g. why the data came from another run

    @property
    def ran(self) -> bool:
        return self.status != NOT_RUN

    @property
    def lineage(self) -> dict[str, str]:
        return _lineage(self.tags)


@dataclass
class RunReport:
    """An end-to-end run: the parent run's facts and one StageRun per stage, in order."""

    run_id: str
    name: str
    kind: str  # "end-to-end" for the runs this report is meant for
    status: str
    started: str  # "2024-05-01 12:00 UTC"
    git_commit: str
    tags: dict[str, str]
    params: dict[str, str]
    stages: dict[str, StageRun]

    @property
    def lineage(self) -> dict[str, str]:
        return _lineage(self.tags)

    def stage(self, name: str) -> StageRun:
        return self.stages.get(name) or StageRun(stage=name, status=NOT_RUN)

    # -- the figures the report and the comparison show, derived from the raw values --

    def funnel(self) -> list[tuple[str, int]]:
        """The corpus funnel: records left after each step, from `funnel/<i>_<name>`."""
        steps = []
        for key, value in self.stage("corpus").metrics.items():
            if found := _FUNNEL_KEY.fullmatch(key):
                steps.append((int(found[1]), found[2].replace("_", " "), int(value)))
        return [(name, count) for _, name, count in sorted(steps)]

    def drops(self) -> list[tuple[str, int]]:
        """Why records were dropped, `<fate>.<stage>.<reason>` -> count, most first."""
        metrics = self.stage("corpus").metrics
        found = [
            (k.removeprefix(DROPS_PREFIX), int(v))
            for k, v in metrics.items()
            if k.startswith(DROPS_PREFIX)
        ]
        return sorted(found, key=lambda item: (-item[1], item[0]))

    def documents_kept(self) -> int | None:
        funnel = self.funnel()
        return funnel[-1][1] if funnel else None

    def train_tokens(self) -> int | None:
        value = self.stage("encode").metrics.get(f"{TOKENS_PREFIX}train")
        return None if value is None else int(value)

    def final_val_loss(self, stage: str) -> float | None:
        """The validation loss at the last evaluation of `pretrain` or `finetune`."""
        run = self.stage(stage)
        history = run.histories.get(VAL_LOSS)
        return history[-1][1] if history else run.metrics.get(VAL_LOSS)

    def eval_rows(self) -> list[EvalRow]:
        """Every evaluation score, with its interval and the paper's figure beside it."""
        found = []
        for task in self.stage("evaluate").tasks:
            for metric, value in task.scores.items():
                low, high = task.intervals.get(metric, (None, None))
                beside = task.beside_paper.get(metric) or {}
                found.append(
                    EvalRow(
                        task=task.task,
                        metric=metric,
                        value=value,
                        low=low,
                        high=high,
                        rows=task.rows,
                        paper=beside.get("value"),
                        paper_size=str(beside.get("paper_size") or ""),
                        same_size=bool(beside.get("same_size")),
                        note=str(beside.get("note") or ""),
                    )
                )
        return found

    def model_size(self) -> tuple[int | None, str]:
        """The evaluated model's parameters and the paper size it is compared with."""
        for task in self.stage("evaluate").tasks:
            for beside in task.beside_paper.values():
                return task.parameters, str(beside.get("model_size") or "")
        tasks = self.stage("evaluate").tasks
        return (tasks[0].parameters if tasks else None), ""

    def win_rates(self) -> list[WinRate]:
        """The preference stage's win rates, with full model names and vote counts from its
        table; from its metrics (short names, no counts) when the table is missing."""
        run = self.stage("preferences")
        rows = run.tables.get(WIN_RATES_TABLE)
        if rows:
            return [_win_rate_from_row(row) for row in rows]
        return self.win_rate_metrics()

    def win_rate_metrics(self) -> list[WinRate]:
        """The win rates under their metric names (`win_rate/A_vs_B`): short model labels,
        such as `pretrain` and `finetune`, that line up from one run to the next."""
        return _win_rates_from_metrics(self.stage("preferences").metrics)

    def judge(self) -> str:
        run = self.stage("preferences")
        return run.tags.get(JUDGE_TAG) or run.params.get("judge", "")

    def judge_reference(self) -> str:
        """What the simulated judge scored with ("" when not recorded)."""
        return self.stage("preferences").tags.get(JUDGE_REFERENCE_TAG, "")


def collect(parent_run_id: str, client: MlflowClient | None = None) -> RunReport:
    """Read an end-to-end run and its stage runs from MLflow.

    `client` defaults to `MlflowClient()`, which follows `MLFLOW_TRACKING_URI` (the gpt2lab
    command line sets it to the workspace's store before anything else).
    """
    client = client or MlflowClient()
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as error:
        raise ValueError(
            f"no MLflow run {parent_run_id!r} in {client.tracking_uri}: {error.message}"
        ) from error
    experiments = _experiment_ids(client)
    children = _children(client, parent.info.run_id, experiments)
    stages: dict[str, StageRun] = {}
    standalone_evaluate = parent.data.tags.get(KIND_TAG) == EVALUATE_KIND
    with _quiet_downloads(), tempfile.TemporaryDirectory(prefix="gpt2lab-report-") as tmp:
        for stage in STAGES:
            if standalone_evaluate:  # `gpt2lab evaluate`: the run is the evaluate stage
                stages[stage] = StageRun(stage=stage, status=NOT_RUN)
                if stage == "evaluate":
                    stages[stage] = _read_stage(client, stage, parent, experiments, Path(tmp))
                continue
            # A retried stage leaves several runs; the newest one is what the run ended with.
            candidates = [run for run in children if run.data.tags.get(STAGE_TAG) == stage]
            if candidates:
                newest = max(candidates, key=lambda run: run.info.start_time or 0)
                stages[stage] = _read_stage(client, stage, newest, experiments, Path(tmp))
            else:
                stages[stage] = StageRun(stage=stage, status=NOT_RUN)
    tags = dict(parent.data.tags)
    return RunReport(
        run_id=parent.info.run_id,
        name=parent.info.run_name or parent.info.run_id,
        kind=tags.get(KIND_TAG, ""),
        status=parent.info.status.lower(),
        started=_when(parent.info.start_time),
        git_commit=tags.get(GIT_COMMIT_TAG, ""),
        tags=tags,
        params=dict(parent.data.params),
        stages=stages,
    )


def _read_stage(
    client: MlflowClient, stage: str, run: Run, experiments: list[str], tmp: Path
) -> StageRun:
    """One stage's child run, or the earlier run it was cached from."""
    status = run.info.status.lower()
    source, note = run, ""
    if run.data.tags.get(CACHED_TAG, "").lower() == "true":
        status = "cached"
        source, note = _cache_source(client, run)
    data = source.data
    found = StageRun(
        stage=stage,
        status=status,
        run_id=run.info.run_id,
        data_run_id=source.info.run_id,
        run_name=run.info.run_name or "",
        params=dict(data.params),
        metrics=dict(data.metrics),
        # The cached run's own tags win: they say what this run used.
        tags={**data.tags, **run.data.tags},
        note=note,
    )
    source_id = source.info.run_id
    if stage in TRAINING_STAGES:
        found.histories = {key: _history(client, source_id, key) for key in LOSS_HISTORIES}
        found.sample_text = _last_samples(client, source_id, tmp)
    for name in TABLES.get(stage, ()):
        rows = _table(client, source_id, name, tmp)
        if rows is not None:
            found.tables[name] = rows
    if stage == "evaluate":
        found.tasks = _eval_tasks(client, source_id, experiments, tmp)
    return found


def _cache_source(client: MlflowClient, run: Run) -> tuple[Run, str]:
    """The run holding a cached stage's data, and a note saying where it came from."""
    source = run
    for _ in range(_CACHE_HOPS):
        earlier_id = source.data.tags.get(CACHED_FROM_TAG)
        if not earlier_id or earlier_id == source.info.run_id:
            break
        try:
            source = client.get_run(earlier_id)
        except MlflowException:
            return source, f"the run it was cached from ({earlier_id}) is no longer in MLflow"
    if source is run:
        return run, "figures copied from an earlier run"
    return source, f"figures from run {source.info.run_id}"


def _eval_tasks(
    client: MlflowClient, evaluate_run_id: str, experiments: list[str], tmp: Path
) -> list[EvalTaskRun]:
    """The evaluate run's per-task child runs, in the order they ran."""
    tasks = []
    runs = _children(client, evaluate_run_id, experiments)
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        run_id = run.info.run_id
        # task.json holds the TaskResult (scores, the paper's figures, notes), examples left out.
        saved = _json_artifact(client, run_id, EVAL_TASK_FILE, tmp) or {}
        metrics = run.data.metrics
        scores = saved.get("scores") or {
            k: v for k, v in metrics.items() if k not in EVAL_BOOKKEEPING
        }
        paper, beside = _paper_figures(saved)
        intervals = {
            k: (float(v[0]), float(v[1]))
            for k, v in (saved.get("intervals") or {}).items()
            if isinstance(v, list | tuple) and len(v) == 2
        }
        tasks.append(
            EvalTaskRun(
                task=str(saved.get("task") or run.data.params.get("task") or run.info.run_name),
                run_id=run_id,
                # The logged metric wins over the file: it is what MLflow shows and compares.
                scores={k: float(metrics.get(k, v)) for k, v in scores.items()},
                paper=paper,
                notes={k: str(v) for k, v in (saved.get("notes") or {}).items()},
                description=str(saved.get("description") or ""),
                intervals=intervals,
                rows=int(saved["rows"]) if saved.get("rows") is not None else None,
                beside_paper=beside,
                parameters=int(saved["parameters"]) if saved.get("parameters") else None,
                paper_sizes={k: int(v) for k, v in (saved.get("paper_sizes") or {}).items()},
                contamination={
                    k: float(v) for k, v in metrics.items() if k.startswith(CONTAMINATION_PREFIX)
                },
            )
        )
    return tasks


def _paper_figures(saved: dict[str, Any]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The paper's figures and the ones chosen to show, from a task.json. Runs recorded
    before figures had sizes saved one number per metric, of unknown size: shown as such."""
    paper, beside = {}, dict(saved.get("beside_paper") or {})
    for metric, figure in (saved.get("paper") or {}).items():
        if isinstance(figure, dict):
            paper[metric] = figure
        elif isinstance(figure, int | float) and metric not in beside:
            beside[metric] = {
                "value": float(figure),
                "paper_size": UNKNOWN_SIZE,
                "same_size": False,
                "note": "recorded before gpt2lab named the paper's model size",
            }
    return paper, beside


# -- reading from MLflow ------------------------------------------------------------------


def _experiment_ids(client: MlflowClient) -> list[str]:
    # Stage runs live in the parent's experiment, but an evaluate flow may put its task runs
    # in its own: search them all (a workspace has a handful).
    return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]


def _children(client: MlflowClient, run_id: str, experiments: list[str]) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiments, filter_string=f"tags.{PARENT_RUN_TAG} = '{run_id}'", page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _history(client: MlflowClient, run_id: str, key: str) -> Points:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _table(client: MlflowClient, run_id: str, name: str, tmp: Path) -> list[dict] | None:
    """An `mlflow.log_table` JSON file as rows; None when the run has no such table."""
    saved = _json_artifact(client, run_id, name, tmp)
    if not isinstance(saved, dict) or "columns" not in saved:
        return None
    # log_table writes pandas' "split" layout: {"columns": [...], "data": [[...], ...]}.
    return [dict(zip(saved["columns"], row, strict=False)) for row in saved.get("data", [])]


def _json_artifact(client: MlflowClient, run_id: str, path: str, tmp: Path) -> Any:
    if not _has_artifact(client, run_id, path):
        return None
    local = client.download_artifacts(run_id, path, str(_fresh_dir(tmp)))
    try:
        return json.loads(Path(local).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable or not JSON: leave it out of the report
        return None


def _last_samples(client: MlflowClient, run_id: str, tmp: Path) -> str:
    """The text sampled at the last evaluation (`samples/step-NNNNNN.txt`, zero-padded)."""
    files = [f.path for f in _list(client, run_id, SAMPLES_FOLDER) if f.path.endswith(".txt")]
    if not files:
        return ""
    local = client.download_artifacts(run_id, max(files), str(_fresh_dir(tmp)))
    text = Path(local).read_text(encoding="utf-8", errors="replace")
    return text[:SAMPLE_TEXT_LIMIT]


def _has_artifact(client: MlflowClient, run_id: str, path: str) -> bool:
    folder = path.rpartition("/")[0] or None
    return any(f.path == path and not f.is_dir for f in _list(client, run_id, folder))


def _list(client: MlflowClient, run_id: str, folder: str | None) -> list:
    try:
        return list(client.list_artifacts(run_id, folder))
    except (MlflowException, OSError):  # no artifact folder yet (a run that failed early)
        return []


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No progress bars: MLflow draws one per downloaded file, and a report reads dozens of
    tiny ones. A value the user set is kept."""
    if os.environ.get(_PROGRESS_BAR_ENV):
        yield
        return
    os.environ[_PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        os.environ.pop(_PROGRESS_BAR_ENV, None)


def _fresh_dir(tmp: Path) -> Path:
    """A new folder per download: two runs' files of the same name must not overwrite."""
    return Path(tempfile.mkdtemp(dir=tmp))


# -- small conversions --------------------------------------------------------------------


def _lineage(tags: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix(LINEAGE_TAG_PREFIX): v
        for k, v in sorted(tags.items())
        if k.startswith(LINEAGE_TAG_PREFIX)
    }


def _when(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _win_rate_from_row(row: dict[str, Any]) -> WinRate:
    """A row of WIN_RATES_TABLE, its columns in the order WIN_RATE_COLUMNS names them."""
    model, opponent, wins, losses, ties, both_bad, rate, low, high = (
        row.get(column) for column in WIN_RATE_COLUMNS
    )

    def count(value: Any) -> int | None:
        return None if value is None else int(value)

    def share(value: Any) -> float:
        # A pair nobody voted on has no rate: NaN, which the JSON table holds as null.
        return math.nan if value is None else float(value)

    return WinRate(
        model=str(model or ""),
        opponent=str(opponent or ""),
        rate=share(rate),
        low=share(low),
        high=share(high),
        wins=count(wins),
        losses=count(losses),
        ties=count(ties),
        both_bad=count(both_bad),
    )


def _win_rates_from_metrics(metrics: dict[str, float]) -> list[WinRate]:
    """`win_rate/A_vs_B` with `win_rate_low/…` and `win_rate_high/…`, when no table exists."""
    found = []
    for key, rate in sorted(metrics.items()):
        if not key.startswith(WIN_RATE_PREFIX):
            continue
        pair = key.removeprefix(WIN_RATE_PREFIX)
        model, _, opponent = pair.partition(PAIR_SEPARATOR)
        low = metrics.get(f"{WIN_RATE_LOW_PREFIX}{pair}", rate)
        high = metrics.get(f"{WIN_RATE_HIGH_PREFIX}{pair}", rate)
        found.append(WinRate(model=model, opponent=opponent, rate=rate, low=low, high=high))
    return found
