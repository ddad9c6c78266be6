"""The run report reads an end-to-end run from a real MLflow store and renders it safely.

The store is filled once per module with runs shaped like the end-to-end contract: a parent
run, a child run per stage (one cached from an earlier run, one stage missing), evaluate
task runs under the evaluate run, and hostile text in names, params, tags and samples.
"""

from __future__ import annotations

import base64
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipelines.preference_records import summary_metrics, win_rate_table
from pipelines.tracking import log_metrics_batch, stage_runs, tracked_run
from reports.run_data import NOT_RUN, STAGES, RunReport, StageRun
from reports.run_report import (
    collect,
    compare,
    render_html,
    render_markdown,
    write_report,
)
from tasks.preferences.analysis import PositionBias, WinRate
from tasks.preferences.summary import BatchSummary, short_labels

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CORPUS_FP, TOKENIZER_FP, TOKENS_FP, CHECKPOINT_FP = ("c" * 64, "a" * 64, "b" * 64, "d" * 64)
FUNNEL = [
    ("links_read", 1000),
    ("after_link_rules", 950),
    ("after_fetched", 700),
    ("after_extracted", 600),
    ("after_filters", 450),
    ("after_dedup", 432),
]


@dataclass
class Recorded:
    client: MlflowClient
    run_a: str  # full run: cached encode, no finetune, simulated judge, hostile strings
    run_b: str  # every stage, people judge
    encode_source: str  # the earlier encode run that run A's encode stage was cached from


@contextmanager
def _stage(parent: str, stage: str, experiment: str, run_name: str | None = None, **kwargs):
    """A stage's run as the end-to-end flow makes it: the stage's own flow calls tracked_run
    as usual, and stage_runs puts the run under the parent, tagged with the stage."""
    with (
        stage_runs("end-to-end", parent, stage),
        tracked_run(experiment, run_name, **kwargs) as run,
    ):
        yield run


def _cached_stage(parent: str, stage: str, cached_from: str | None):
    """A skipped stage, as end_to_end.py records it: an empty child run pointing at the run
    that did the work (or, without `cached_from`, holding copies of its figures)."""
    tags = {"gpt2lab.stage": stage, "gpt2lab.cached": "true"}
    if cached_from:
        tags["gpt2lab.cached_from"] = cached_from
    return tracked_run("end-to-end", f"{stage} (cached)", parent_run_id=parent, tags=tags)


def _log_rows(rows: list[dict], name: str) -> None:
    mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, name)


def _corpus(parent: str, kept: int, sample_text: str = "A kept page.") -> None:
    with _stage(parent, "corpus", "corpus", lineage={"corpus": CORPUS_FP}, params={"n": 64}):
        funnel = [*FUNNEL[:-1], ("after_dedup", kept)]
        log_metrics_batch(None, {f"funnel/{i}_{name}": n for i, (name, n) in enumerate(funnel)})
        log_metrics_batch(
            None, {"drops/failed.fetch.http_404": 250, "drops/dropped.filter.too_short": 150}
        )
        _log_rows(
            [{"fate": "failed", "stage": "fetch", "reason": "http_404", "count": 250}],
            "drop_reasons.json",
        )
        _log_rows(
            [{"idx": 0, "url": "https://example.com/a", "title": "A page", "text": sample_text}],
            "samples_kept.json",
        )


def _encode_metrics(tokens: int) -> dict[str, float]:
    return {
        "tokens/train": tokens,
        "documents/train": 400,
        "text_mb/train": 0.55,
        "tokens/val": tokens // 10,
        "documents/val": 40,
        "text_mb/val": 0.05,
        "bytes_per_token": 4.31,
        "shards": 2,
    }


def _pretrain(parent: str, stage: str, val_losses: list[float], name: str = "tiny") -> None:
    # A model to start from that is not a folder is recorded by name (a hub id): user text.
    lineage = {"tokens": TOKENS_FP, "tokenizer": TOKENIZER_FP, "init": name}
    params = {"name": name, "max_steps": 50}
    with _stage(parent, stage, "train", run_name=name, lineage=lineage, params=params):
        train = [("loss/train", 5.0 - step * 0.03, step) for step in range(1, 51)]
        val = [("loss/val", loss, 25 * (i + 1)) for i, loss in enumerate(val_losses)]
        log_metrics_batch(None, [*train, *val, ("train/tokens_per_s", 812.0, 50)])
        mlflow.log_text("### early\nearly words", "samples/step-000025.txt")
        mlflow.log_text(f"### The meaning of\nThe meaning of {HOSTILE}", "samples/step-000050.txt")


SIZES = {"117M": 124_439_808, "345M": 354_823_168, "762M": 774_030_080, "1542M": 1_557_611_200}
LAMBADA_ACCURACY = {"117M": 0.4599, "345M": 0.5548, "762M": 0.6012, "1542M": 0.6324}


def _task_record(task: str, scores: dict, paper: dict, beside: dict, notes: dict) -> dict:
    """A task.json as pipelines/evaluate.py writes it (examples left out)."""
    return {
        "task": task,
        "version": 2,
        "description": f"{task} test",
        "scores": scores,
        "intervals": {k: [v * 0.8, v * 1.2] for k, v in scores.items()},
        "rows": 40,
        "notes": notes,
        "paper": paper,
        "beside_paper": beside,
        "parameters": 1_234_567,
        "paper_sizes": SIZES,
        "examples": 40,
    }


def _evaluate(parent: str, bleu: float, lambada: bool, legacy: bool = False) -> None:
    with _stage(parent, "evaluate", "evaluate", lineage={"checkpoint": CHECKPOINT_FP}) as evaluate:
        wmt_figure = {"by_size": {"1542M": 11.5}, "source": "section 3.7", "note": ""}
        wmt_beside = {
            "model_size": "117M",
            "paper_size": "1542M",
            "value": 11.5,
            "same_size": False,
            "source": "section 3.7",
            "note": "the paper reports this only for 1542M",
        }
        notes = {"sacrebleu": "nrefs:1|case:mixed|tok:13a"}
        records = [
            _task_record(
                "wmt14-fr-en", {"bleu": bleu}, {"bleu": wmt_figure}, {"bleu": wmt_beside}, notes
            )
        ]
        if legacy:  # a task.json from before the paper's sizes were recorded
            records = [{"task": "wmt14-fr-en", "scores": {"bleu": bleu}, "paper": {"bleu": 11.5}}]
        if lambada:
            accuracy = {"by_size": LAMBADA_ACCURACY, "source": "Table 3, LAMBADA (ACC)"}
            perplexity = {"by_size": {"117M": 35.13}, "source": "Table 3, LAMBADA (PPL)"}
            beside = {
                "accuracy": {
                    "model_size": "117M",
                    "paper_size": "117M",
                    "value": 0.4599,
                    "same_size": True,
                    "source": "Table 3",
                    "note": "",
                },
                "perplexity": {
                    "model_size": "117M",
                    "paper_size": "117M",
                    "value": 35.13,
                    "same_size": True,
                    "source": "Table 3",
                    "note": "",
                },
            }
            records.append(
                _task_record(
                    "lambada",
                    {"accuracy": 0.31, "perplexity": 80.5},
                    {"accuracy": accuracy, "perplexity": perplexity},
                    beside,
                    {},
                )
            )
        for record in records:
            task = record["task"]
            # As pipelines/evaluate.py log_task_run: a child run of the evaluate run.
            with tracked_run(
                "evaluate",
                run_name=task,
                parent_run_id=evaluate.info.run_id,
                params={"task": task, "version": 1},
                tags=record.get("notes") or {},
            ):
                metrics = {**record["scores"], "generated": 4, "from_cache": 0, "seconds": 1.5}
                if task == "lambada":
                    metrics["contamination/ngram_overlap"] = 0.125
                log_metrics_batch(None, metrics)
                mlflow.log_dict(record, "task.json")


def _preferences(parent: str, judge: str, rate: float, low: float, high: float) -> None:
    """Logged as pipelines/preferences.py report_batch does, from a real BatchSummary."""
    models = ["workspace/checkpoints/run/finetune", "workspace/checkpoints/run/pretrain"]
    summary = BatchSummary(
        batch="b1",
        judge=judge,
        models=models,
        labels=short_labels(models),
        votes=60,
        win_rates=[WinRate(models[0], models[1], 36, 18, 4, 2, rate, low, high)],
        strengths={},
        strength_intervals={},
        position=PositionBias(30, 54, 0.55, 0.5),
        agreement=float("nan"),
        agreement_pairs=0,
        annotators=[],
    )
    with _stage(
        parent,
        "preferences",
        "preferences",
        run_name=f"b1 ({judge})",
        params={"judge": judge},
        tags={"gpt2lab.judge": judge},
    ):
        log_metrics_batch(None, summary_metrics(summary))
        mlflow.log_table(win_rate_table(summary), "win_rates.json")


@pytest.fixture(scope="module")
def recorded(module_workspace: Path) -> Recorded:
    # An encode run from before: run A's encode stage is cached from it.
    with tracked_run(
        "encode",
        lineage={"corpus": CORPUS_FP, "tokenizer": TOKENIZER_FP, "tokens": TOKENS_FP},
        params={"tokenizer": HOSTILE},
    ) as earlier:
        log_metrics_batch(None, _encode_metrics(123_456))

    lineage = {"corpus": CORPUS_FP, "tokenizer": TOKENIZER_FP, "checkpoint": CHECKPOINT_FP}
    kind = {"gpt2lab.kind": "end-to-end"}
    with tracked_run("end-to-end", f"{HOSTILE} nightly", lineage=lineage, tags=kind) as a:
        run_a = a.info.run_id
        _corpus(run_a, kept=432, sample_text=f"Kept text with {HOSTILE} in it.")
        with _cached_stage(run_a, "encode", cached_from=earlier.info.run_id):
            pass
        _pretrain(run_a, "pretrain", [4.5, 3.2109], name=HOSTILE)
        # No finetune stage: it was not run.
        _evaluate(run_a, bleu=3.1, lambada=True)
        _preferences(run_a, "simulated", 0.65, 0.52, 0.76)

    with tracked_run("end-to-end", "weekly", lineage=lineage, tags=kind) as b:
        run_b = b.info.run_id
        _corpus(run_b, kept=500)
        # Cached the other way: the earlier figures copied onto the stage's own run.
        with _cached_stage(run_b, "encode", cached_from=None):
            log_metrics_batch(None, _encode_metrics(200_000))
        _pretrain(run_b, "pretrain", [4.4, 2.9])
        _pretrain(run_b, "finetune", [2.5, 2.25])
        _evaluate(run_b, bleu=4.2, lambada=False, legacy=True)
        _preferences(run_b, "people", 0.58, 0.45, 0.70)
    return Recorded(MlflowClient(), run_a, run_b, earlier.info.run_id)


@pytest.fixture(scope="module")
def report_a(recorded: Recorded):
    return collect(recorded.run_a, recorded.client)


@pytest.fixture(scope="module")
def html_a(report_a) -> str:
    return render_html(report_a)


def _section(html: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert found, f"no section {anchor}"
    return found[1]


def test_collect_reads_stages_cache_and_tasks(report_a, recorded):
    assert report_a.kind == "end-to-end"
    assert [s for s, run in report_a.stages.items() if not run.ran] == ["finetune"]
    encode = report_a.stage("encode")
    assert encode.status == "cached" and encode.data_run_id == recorded.encode_source
    assert report_a.train_tokens() == 123_456
    assert report_a.documents_kept() == 432
    assert report_a.final_val_loss("pretrain") == pytest.approx(3.2109)
    assert "The meaning of" in report_a.stage("pretrain").sample_text  # the last samples
    assert [t.task for t in report_a.stage("evaluate").tasks] == ["wmt14-fr-en", "lambada"]
    (rate,) = report_a.win_rates()
    assert (rate.wins, rate.rate, rate.low, rate.high) == (36, 0.65, 0.52, 0.76)


def test_cached_stage_with_copied_metrics(recorded):
    encode = collect(recorded.run_b, recorded.client).stage("encode")
    assert encode.status == "cached" and encode.data_run_id == encode.run_id
    assert encode.metrics["tokens/train"] == 200_000


def test_a_pair_without_votes_renders_without_a_rate():
    """A win-rate table row of a pair nobody voted on holds nulls (NaN in the flow)."""
    row = {
        "model": "a",
        "opponent": "b",
        "wins": 0,
        "losses": 0,
        "ties": 0,
        "both_bad": 3,
        "win_rate": None,
        "low_95": None,
        "high_95": None,
    }
    stages = {name: StageRun(name, NOT_RUN) for name in STAGES}
    stages["preferences"] = StageRun(
        "preferences", "finished", run_id="r1", tables={"win_rates.json": [row]}
    )
    report = RunReport(
        run_id="p1",
        name="empty",
        kind="end-to-end",
        status="finished",
        started="",
        git_commit="",
        tags={},
        params={},
        stages=stages,
    )
    html = render_html(report)
    assert "<td>a</td><td>b</td><td>0</td><td>0</td><td>0</td><td>3</td><td>—</td>" in html
    assert "<img" not in html  # nothing to draw
    assert html.count("Stage not run.") == 5


def test_html_holds_every_section(html_a):
    funnel = _section(html_a, "corpus")
    assert "1,000" in funnel and "432" in funnel and "43.2%" in funnel
    assert "failed.fetch.http_404" in funnel
    assert "123,456" in _section(html_a, "encode")
    assert '<span class="badge cached">cached: figures from run' in _section(html_a, "summary")
    assert "3.211" in _section(html_a, "pretrain")  # the final validation loss
    assert "Stage not run." in _section(html_a, "finetune")
    evaluation = _section(html_a, "evaluate")
    for cell in (
        "3.1 (2.48–3.72)",  # the score and its interval
        "11.5 (1542M only)",  # a figure of another size, said plainly
        "0.31 (0.248–0.372)",
        "0.4599 (117M)",
        "35.13 (117M)",
        "Table 3, LAMBADA (ACC)",  # where the figure comes from
        "0.125",  # the overlap with the training corpus
    ):
        assert f"<td>{cell}</td>" in evaluation, cell
    assert "1,234,567 parameters" in evaluation and "117M model" in evaluation
    preferences = _section(html_a, "preferences")
    assert "0.650 (0.520–0.760)" in preferences
    assert "Simulated votes" in preferences
    lineage = _section(html_a, "lineage")
    for fingerprint in (CORPUS_FP, TOKENIZER_FP, TOKENS_FP, CHECKPOINT_FP):
        assert fingerprint in lineage


def test_html_is_self_contained_and_escaped(html_a):
    assert "<script" not in html_a.lower()
    assert ESCAPED in html_a.split("<body>")[0]  # the page title: the run name
    assert ESCAPED in _section(html_a, "lineage")  # a tag
    assert ESCAPED in _section(html_a, "encode")  # a param of the run it was cached from
    assert ESCAPED in _section(html_a, "pretrain").split("<pre>")[1]  # the model's sample
    references = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html_a, re.I)
    assert references
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in references)
    assert "<link" not in html_a and "@import" not in html_a and "url(" not in html_a
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html_a)
    assert len(images) == 4  # funnel, pretraining loss, accuracy over model sizes, win rates
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_has_the_same_figures(report_a):
    markdown = render_markdown(report_a)
    assert "| after dedup | 432 | 43.2% |" in markdown
    assert "| wmt14-fr-en | bleu | 3.1 (2.48–3.72) | 40 | 11.5 (1542M only) |" in markdown
    assert "0.650 (0.520–0.760)" in markdown and "Simulated votes" in markdown
    assert "Stage not run." in markdown and CHECKPOINT_FP in markdown
    # Outside code blocks nothing is raw HTML; inside one, text is shown as it is.
    outside_code = re.sub(r"^```+text$.*?^```+$", "", markdown, flags=re.S | re.M)
    assert "<script" not in outside_code.lower() and ESCAPED in outside_code
    assert f"```text\n### The meaning of\nThe meaning of {HOSTILE}\n```" in markdown
    # The sampling note holds "|": escaped, so the table keeps its columns.
    assert "nrefs:1\\|case:mixed\\|tok:13a" in markdown


def test_compare_puts_runs_side_by_side(recorded):
    html, markdown = compare([recorded.run_a, recorded.run_b], recorded.client)
    assert "<script" not in html.lower() and ESCAPED in html
    assert "weekly" in html
    assert "| final validation loss (pretrain) |  | 3.211 | 2.9 |" in markdown
    assert "| final validation loss (finetune) |  | — | 2.25 |" in markdown
    assert "| documents kept |  | 432 | 500 |" in markdown
    assert "| tokens (train) |  | 123,456 | 200,000 |" in markdown
    assert "| wmt14-fr-en: bleu | 11.5 (1542M only) | 3.1 (2.48–3.72) | 4.2 |" in markdown
    # Run B recorded its figure before sizes were: shown, and said to be of unknown size.
    b = collect(recorded.run_b, recorded.client)
    assert "11.5 (size not recorded)" in render_markdown(b)
    assert "| lambada: accuracy | 0.4599 (117M) | 0.31 (0.248–0.372) | — |" in markdown
    assert (
        "| win rate: finetune vs pretrain |  | 0.650 (0.520–0.760) | 0.580 (0.450–0.700) |"
    ) in markdown
    assert "| preference judge |  | simulated | people |" in markdown


def test_write_report_writes_both_files(recorded, tmp_path):
    html_path, md_path = write_report(recorded.run_b, tmp_path / "out", recorded.client)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.md"]
    assert "2.25" in _section(html_path.read_text(encoding="utf-8"), "finetune")
    assert "| pretrain | finished |" in md_path.read_text(encoding="utf-8")


def test_unknown_run_is_a_clear_error(recorded):
    with pytest.raises(ValueError, match="no MLflow run 'nope'"):
        collect("nope", recorded.client)
