"""What a run report says, section by section, as plain tables of formatted text.

The HTML and the Markdown renderers (run_report.py) lay out the same `Section` objects, so
the two reports always hold the same figures; only HTML draws the charts. Every string here
may come from MLflow (run names, params, sample text): the renderers escape them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from reports.corpus_charts import funnel_chart
from reports.eval_charts import ScalingCurve, scaling_curves
from reports.mlflow_names import (
    BYTES_PER_TOKEN,
    CONTAMINATION_PREFIX,
    DOCUMENTS_PREFIX,
    ENCODE_MB_PER_S,
    EVALUATE_KIND,
    SHARDS,
    TEXT_MB_PREFIX,
    TOKENS_PREFIX,
    TRAIN_LOSS,
    TRAIN_TOKENS_PER_S,
    VAL_LOSS,
)
from reports.preference_charts import win_rate_chart
from reports.run_data import NOT_RUN, UNKNOWN_SIZE, EvalRow, EvalTaskRun, RunReport, StageRun
from reports.train_charts import loss_curve

Chart = Callable[[Path], Path]  # draws a PNG at the given path and returns it

# The lineage inputs the report lists first, in pipeline order; any others follow.
LINEAGE_ORDER = ("corpus", "tokens", "tokenizer", "init", "checkpoint")
KEPT_SAMPLES_SHOWN = 3
SAMPLE_SNIPPET = 200  # characters of each kept document shown
MISSING = "—"


@dataclass
class Table:
    """Rows of already formatted cells (headers all "" for a two-column list of facts)."""

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    status_column: int | None = None  # cells shown as coloured badges in HTML


@dataclass
class Section:
    """One heading of the report and what is under it, in this order."""

    title: str
    anchor: str  # the HTML id, also the Markdown heading's natural anchor
    notes: list[str] = field(default_factory=list)  # short paragraphs
    warning: str = ""  # shown so that nobody misses it (simulated votes, lineage mismatch)
    tables: list[Table] = field(default_factory=list)
    chart: Chart | None = None  # HTML only
    chart_alt: str = ""
    text_caption: str = ""
    text: str = ""  # preformatted text: what the model wrote
    settings: Table | None = None  # all params, folded away in HTML


# -- formatting ---------------------------------------------------------------------------


def num(value: float | int | None) -> str:
    """Counts with thousands separators, other figures to 4 significant digits."""
    if value is None:
        return MISSING
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def interval(rate: float, low: float, high: float) -> str:
    if math.isnan(rate):  # no votes on this pair yet
        return MISSING
    return f"{rate:.3f} ({low:.3f}–{high:.3f})"


def status_text(run: StageRun) -> str:
    return f"{run.status}: {run.note}" if run.note else run.status


def _mathtext_safe(text: str) -> str:
    # matplotlib reads "$...$" as a formula (and fails on an unbalanced one): show it as is.
    return text.replace("$", r"\$")


# -- the sections -------------------------------------------------------------------------


def sections(report: RunReport) -> list[Section]:
    """The whole report, top to bottom. A standalone evaluate run has one stage to show."""
    if report.kind == EVALUATE_KIND:
        return [summary_section(report), lineage_section(report), evaluation_section(report)]
    return [
        summary_section(report),
        lineage_section(report),
        corpus_section(report),
        encode_section(report),
        training_section(report, "pretrain", "Pretraining"),
        training_section(report, "finetune", "Fine-tuning"),
        evaluation_section(report),
        preferences_section(report),
    ]


def summary_section(report: RunReport) -> Section:
    facts = Table(
        ["", ""],
        [
            ["run", report.name],
            ["MLflow run id", report.run_id],
            ["started", report.started],
            ["status", report.status],
            ["git commit", report.git_commit or MISSING],
        ],
    )
    stages = Table(
        ["stage", "status", "MLflow run", "run id"],
        [
            [name, status_text(run), run.run_name or MISSING, run.run_id or MISSING]
            for name, run in report.stages.items()
            if report.kind != EVALUATE_KIND or run.ran
        ],
        status_column=1,
    )
    warning = ""
    if report.kind not in ("end-to-end", EVALUATE_KIND):
        warning = (
            f"This run is tagged gpt2lab.kind = {report.kind or '(none)'}, not "
            "end-to-end: it may have no stage runs."
        )
    section = Section("Summary", "summary", tables=[facts, stages], warning=warning)
    section.settings = _settings(report.params)
    return section


def lineage_section(report: RunReport) -> Section:
    """Every input fingerprint the runs recorded, and which run recorded it."""
    seen: dict[tuple[str, str], list[str]] = {}
    for name, fingerprint in report.lineage.items():
        seen.setdefault((name, fingerprint), []).append("end-to-end run")
    for stage, run in report.stages.items():
        for name, fingerprint in run.lineage.items():
            seen.setdefault((name, fingerprint), []).append(stage)

    def order(key: tuple[str, str]) -> tuple[int, str]:
        base = key[0].split(".")[0]
        return (LINEAGE_ORDER.index(base) if base in LINEAGE_ORDER else len(LINEAGE_ORDER), key[0])

    keys = sorted(seen, key=order)
    rows = [[name, fingerprint, ", ".join(seen[(name, fingerprint)])] for name, fingerprint in keys]
    # One name can have several fingerprints without anything being wrong: fine-tuning
    # reads its own tokens, and a stage may fingerprint its input in its own way.
    warning = ""
    notes = [
        "A fingerprint is a SHA-256 of the data's content: the same fingerprint means "
        "the same bytes (see docs/workspace.md). Each row names the runs that recorded "
        "it."
    ]
    if not rows:
        notes.append("No lineage was recorded.")
    return Section(
        "Lineage",
        "lineage",
        notes=notes,
        warning=warning,
        tables=[Table(["input", "fingerprint", "recorded by"], rows)] if rows else [],
    )


def corpus_section(report: RunReport) -> Section:
    run = report.stage("corpus")
    section = _stage_section(run, "Corpus funnel", "corpus")
    if not run.ran:
        return section
    steps = report.funnel()
    if steps:
        first = max(steps[0][1], 1)
        section.tables.append(
            Table(
                ["step", "records", "share of links"],
                [[name, num(n), f"{n / first:.1%}"] for name, n in steps],
            )
        )
        section.chart = partial(funnel_chart, steps)
        section.chart_alt = "corpus funnel: records left after each step"
    drops = report.drops()
    if drops:
        section.tables.append(
            Table(
                ["why dropped (fate.stage.reason)", "records"], [[key, num(n)] for key, n in drops]
            )
        )
    kept = run.tables.get("samples_kept.json", [])[:KEPT_SAMPLES_SHOWN]
    if kept:
        rows = [
            [str(d.get("title", "")), str(d.get("url", "")), _snippet(str(d.get("text", "")))]
            for d in kept
        ]
        section.tables.append(Table(["title", "url", "text"], rows, caption="Kept documents"))
    return section


def encode_section(report: RunReport) -> Section:
    run = report.stage("encode")
    section = _stage_section(run, "Tokens", "encode")
    if not run.ran:
        return section
    metrics = run.metrics
    splits = sorted(k.removeprefix(TOKENS_PREFIX) for k in metrics if k.startswith(TOKENS_PREFIX))
    if splits:
        rows = [
            [
                split,
                num(metrics.get(f"{TOKENS_PREFIX}{split}")),
                num(metrics.get(f"{DOCUMENTS_PREFIX}{split}")),
                num(metrics.get(f"{TEXT_MB_PREFIX}{split}")),
            ]
            for split in splits
        ]
        section.tables.append(Table(["split", "tokens", "documents", "text (MB)"], rows))
    others = [
        ("UTF-8 bytes per token", BYTES_PER_TOKEN),
        ("shards", SHARDS),
        ("encoding speed (MB/s)", ENCODE_MB_PER_S),
    ]
    rows = [[label, num(metrics[key])] for label, key in others if key in metrics]
    if rows:
        section.tables.append(Table(["", ""], rows))
    return section


def training_section(report: RunReport, stage: str, title: str) -> Section:
    run = report.stage(stage)
    section = _stage_section(run, f"{title} loss", stage)
    if not run.ran:
        return section
    train, val = run.histories.get(TRAIN_LOSS, []), run.histories.get(VAL_LOSS, [])
    rows = [
        ["optimizer steps", num(train[-1][0] if train else None)],
        ["final training loss", num(train[-1][1] if train else run.metrics.get(TRAIN_LOSS))],
        ["final validation loss", num(report.final_val_loss(stage))],
        ["best validation loss", num(min(v for _, v in val) if val else None)],
        ["tokens per second (last step)", num(run.metrics.get(TRAIN_TOKENS_PER_S))],
    ]
    section.tables.append(Table(["", ""], rows))
    if train or val:
        section.chart = partial(loss_curve, train, val)
        section.chart_alt = f"{stage} loss curve: training and validation loss per step"
    if run.sample_text:
        section.text_caption = "What the model wrote from the fixed prompts at its last evaluation:"
        section.text = run.sample_text
    return section


def evaluation_section(report: RunReport) -> Section:
    run = report.stage("evaluate")
    section = _stage_section(run, "Evaluation", "evaluate")
    if not run.ran:
        return section
    found = report.eval_rows()
    if not found:
        section.notes.append("No task results were recorded.")
        return section
    parameters, size = report.model_size()
    if size:
        section.notes.append(
            f"This model has {num(parameters)} parameters; the GPT-2 paper's figures shown are "
            f"for its {size} model, the nearest of its four sizes, except where a figure is "
            f"marked “only”: the paper reports it for that size alone (translation and "
            f"summarisation: 1542M), so it is not like-for-like. Intervals are 95% bootstrap "
            f"intervals over the n rows scored; “—” in the paper column: no such figure."
        )
    rows = [
        [
            row.task,
            row.metric,
            score_with_interval(row.value, row.low, row.high),
            num(row.rows),
            paper_label(row),
            row.note,
        ]
        for row in found
    ]
    section.tables.append(
        Table(["task", "metric", "this model (95% interval)", "n", "GPT-2 paper", "note"], rows)
    )
    curves = _scaling_curves(run.tasks)
    if curves:
        section.chart = partial(scaling_curves, curves)
        section.chart_alt = (
            "The GPT-2 paper's figures over its four model sizes (parameters, log scale), "
            "with this model as a star: " + ", ".join(c.title for c in curves)
        )
    contamination = [
        [t.task, key.removeprefix(CONTAMINATION_PREFIX), num(value)]
        for t in run.tasks
        for key, value in t.contamination.items()
    ]
    if contamination:
        section.tables.append(
            Table(
                ["task", "overlap with the training corpus (8-grams)", "value"],
                contamination,
                "Rows that also occur in the corpus inflate a score (the paper's section 4).",
            )
        )
    described = [[t.task, t.description] for t in run.tasks if t.description]
    if described:
        section.tables.append(Table(["task", "what it measures"], described))
    sources = sorted(
        {(t.task, m, f.get("source", "")) for t in run.tasks for m, f in t.paper.items()}
    )
    if sources:
        section.tables.append(Table(["task", "metric", "where in the GPT-2 paper"], sources))
    notes = [[t.task, key, value] for t in run.tasks for key, value in t.notes.items()]
    if notes:
        section.tables.append(Table(["task", "note", "value"], notes))
    return section


def score_with_interval(value: float, low: float | None, high: float | None) -> str:
    """ "3.1 (2.5–3.8)": a score and its 95% interval, when there is one."""
    if low is None or high is None or math.isnan(low):
        return num(value)
    return f"{num(value)} ({num(low)}–{num(high)})"


def paper_label(row: EvalRow) -> str:
    """ "29.41 (117M)" beside a like-for-like size, "5 (1542M only)" otherwise."""
    if row.paper is None:
        return MISSING
    if row.same_size or row.paper_size == UNKNOWN_SIZE:
        return f"{num(row.paper)} ({row.paper_size})"
    return f"{num(row.paper)} ({row.paper_size} only)"


def _scaling_curves(tasks: list[EvalTaskRun]) -> list[ScalingCurve]:
    """A curve for every metric the paper reports at all four sizes."""
    curves = []
    for task in tasks:
        if task.parameters is None:
            continue
        for metric, figure in task.paper.items():
            by_size = figure.get("by_size") or {}
            if metric not in task.scores or len(by_size) < 2:
                continue
            if not all(size in task.paper_sizes for size in by_size):
                continue
            low, high = task.intervals.get(metric, (None, None))
            curves.append(
                ScalingCurve(
                    title=f"{task.task}: {metric}",
                    paper={k: float(v) for k, v in by_size.items()},
                    sizes=task.paper_sizes,
                    parameters=task.parameters,
                    value=task.scores[metric],
                    low=low,
                    high=high,
                )
            )
    return curves


def preferences_section(report: RunReport) -> Section:
    run = report.stage("preferences")
    section = _stage_section(run, "Preferences", "preferences")
    if not run.ran:
        return section
    judge = report.judge() or "unknown"
    if judge == "simulated":
        section.warning = (
            "Simulated votes: a scripted judge, not people. These win rates "
            "only show that the pipeline works; they say nothing about quality."
        )
        if reference := report.judge_reference():
            section.notes.append(
                f"The simulated judge's reference: {reference}. Of two continuations it "
                "prefers the one its reference finds less surprising (lower loss per token)."
            )
    section.notes.append(
        f"Judge: {judge}. Votes: {num(run.metrics.get('votes'))}. Win rate = "
        "(wins + ties/2) / (wins + losses + ties), with its 95% Wilson "
        "interval; an interval that contains 0.5 cannot tell the two apart."
    )
    rates = report.win_rates()
    if rates:
        section.tables.append(
            Table(
                ["model", "vs", "wins", "losses", "ties", "both bad", "win rate (95% interval)"],
                [
                    [
                        w.model,
                        w.opponent,
                        num(w.wins),
                        num(w.losses),
                        num(w.ties),
                        num(w.both_bad),
                        interval(w.rate, w.low, w.high),
                    ]
                    for w in rates
                ],
            )
        )
        # The chart uses the short names of the metrics (`finetune vs pretrain`), as the
        # preferences flow's own chart does; full paths would squeeze the bars.
        short = report.win_rate_metrics() or rates
        bars = [
            (_mathtext_safe(w.label), w.rate, w.low, w.high)
            for w in short
            if not math.isnan(w.rate)
        ]
        if bars:
            section.chart = partial(win_rate_chart, bars, title=f"Win rates ({judge} judge)")
            section.chart_alt = "win rate of each pair with its 95% interval"
    return section


def _stage_section(run: StageRun, title: str, anchor: str) -> Section:
    """A stage's section with its status; "Stage not run." when there is no run."""
    section = Section(title, anchor)
    if run.status == NOT_RUN:
        section.notes.append("Stage not run.")
        return section
    if run.status != "finished":
        section.notes.append(f"Status: {status_text(run)}.")
    section.settings = _settings(run.params)
    return section


def _settings(params: dict[str, str]) -> Table | None:
    """A run's params: the settings its runs are compared by (the whole config is the
    run's config.json artifact); HTML folds them away."""
    if not params:
        return None
    rows = [[key, value] for key, value in sorted(params.items())]
    noun = "param" if len(rows) == 1 else "params"
    return Table(["param", "value"], rows, f"Settings ({len(rows)} {noun})")


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SAMPLE_SNIPPET else text[:SAMPLE_SNIPPET] + "…"
