"""The end-to-end flow on a very small config: every stage runs once and lands in one
MLflow tree with a report; a failing stage stops the run with its name, a rerun goes on
from it, and a run with nothing changed skips every stage."""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.end_to_end import EndToEndConfig, EndToEndResult, end_to_end_flow
from reports.mlflow_names import STAGES, TRAINING_STAGES
from tests.workspaces import fresh_workspace

SMALL = {
    "miniweb_articles": 30,
    "encode": {"vocab_size": 600},
    "pretrain": {
        "max_steps": 8,
        "eval_interval": 4,
        "checkpoint_interval": 4,
        "micro_batch": 4,
        "batch_tokens": 512,
        "context": 64,
    },
    "finetune": {
        "max_steps": 4,
        "eval_interval": 2,
        "checkpoint_interval": 2,
        "micro_batch": 4,
        "batch_tokens": 256,
        "context": 64,
    },
    "evaluate": {"tasks": ["wikitext2-perplexity"], "limit": 1},
    "preferences": {"n": 3, "max_new_tokens": 8},
}


@dataclass
class SmallRuns:
    """The small end-to-end config run three times in one workspace: broken at evaluate,
    resumed (corpus to finetune reused), and again with nothing changed."""

    workspace: Path
    broken: BaseException
    resumed: EndToEndResult
    again: EndToEndResult
    messages: list[str]  # the log lines of the resumed run


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def small_runs(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path, prefect_harness
) -> Iterator[SmallRuns]:
    """One workspace for this module's tests, so the small chain runs once for all of them
    (the `workspace` fixture, made for one test, would run it again for each)."""
    with fresh_workspace(tmp_path_factory.mktemp("small-e2e"), mlflow_template_db) as home:
        broken = EndToEndConfig(name="small", **{**SMALL, "evaluate": {"tasks": ["no-such-task"]}})
        with pytest.raises(RuntimeError) as failed:
            end_to_end_flow(broken)
        config = EndToEndConfig(name="small", **SMALL)
        lines, root_logger = _Lines(), logging.getLogger()
        level = root_logger.level
        root_logger.setLevel(logging.INFO)
        root_logger.addHandler(lines)
        try:
            resumed = end_to_end_flow(config)
        finally:
            root_logger.removeHandler(lines)
            root_logger.setLevel(level)
        again = end_to_end_flow(config)
        yield SmallRuns(home, failed.value, resumed, again, lines.lines)


@pytest.mark.slow
def test_stages_run_once_resume_after_a_failure_and_are_skipped_when_unchanged(small_runs):
    assert re.search("stage evaluate failed: .*no-such-task", str(small_runs.broken))
    resumed, again = small_runs.resumed, small_runs.again
    done_before = ("corpus", "encode", "pretrain", "finetune")
    # One progress line per stage: where the run is, out of how many, and since when.
    progress = [m for m in small_runs.messages if m.startswith("stage ")]
    assert any(m.startswith("stage 3/6 pretrain (") and "skipped" in m for m in progress)
    assert any(m.startswith("stage 5/6 evaluate (") and m.endswith(": done") for m in progress)
    assert resumed.stages == {
        stage: "cached" if stage in done_before else "ran" for stage in STAGES
    }

    client = MlflowClient()
    parent = client.get_run(resumed.mlflow_run_id)
    assert parent.data.tags["gpt2lab.kind"] == "end-to-end"
    for name in ("corpus", "tokenizer", "tokens", "checkpoint"):
        assert parent.data.tags[f"gpt2lab.lineage.{name}"]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{resumed.mlflow_run_id}'",
    )
    by_stage = {run.data.tags["gpt2lab.stage"]: run for run in children}
    assert set(by_stage) == set(STAGES)
    assert by_stage["corpus"].data.tags["gpt2lab.cached"] == "true"
    first_corpus = client.get_run(by_stage["corpus"].data.tags["gpt2lab.cached_from"])
    assert first_corpus.data.metrics  # the funnel, logged by the run that did the work
    assert "win_rate_low/pretrained_vs_finetuned" in by_stage["preferences"].data.metrics
    artifacts = {a.path for a in client.list_artifacts(resumed.mlflow_run_id, "report")}
    assert artifacts == {"report/report.html", "report/report.md"}
    html = resumed.report.read_text()
    assert "Stage not run" not in html and "wikitext2-perplexity" in html

    assert again.stages == dict.fromkeys(STAGES, "cached")
    assert again.outputs["finetune"]["checkpoint"] == resumed.outputs["finetune"]["checkpoint"]

    # gpt2lab report: the two runs side by side, rendered from MLflow.
    from typer.testing import CliRunner

    from pipelines.cli import app

    shown = CliRunner().invoke(app, ["report", resumed.mlflow_run_id, again.mlflow_run_id])
    assert shown.exit_code == 0, shown.output
    page = (
        small_runs.workspace
        / "reports"
        / f"{resumed.mlflow_run_id[:8]}-{again.mlflow_run_id[:8]}"
        / "comparison.html"
    ).read_text()
    assert resumed.mlflow_run_id[:8] in page and again.mlflow_run_id[:8] in page
    missing = CliRunner().invoke(app, ["report", "0" * 32])
    assert missing.exit_code == 2 and f"no MLflow run '{'0' * 32}'" in missing.output


def test_a_bad_section_is_refused_at_start_naming_the_field():
    with pytest.raises(ValueError, match=r"pretrain\.max_stepz: Extra inputs are not permitted"):
        EndToEndConfig(pretrain={"max_stepz": 5})
    with pytest.raises(ValueError, match=r"evaluate\.limit: Input should be greater"):
        EndToEndConfig(evaluate={"limit": 0})
    kept = EndToEndConfig(pretrain={"max_steps": 5}).pretrain
    assert kept["max_steps"] == 5 and kept["device"] == "cpu"  # the other defaults stay


def test_gpt2lab_run_names_a_bad_field_of_its_config_file(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    config = tmp_path / "e2e.toml"
    config.write_text('name = "x"\n[pretrain]\nmax_steps = -1\n')
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "pretrain.max_steps: Input should be greater than or equal to 1" in result.output


@pytest.mark.slow
def test_the_store_reads_the_way_mlflow_3_is_meant_to_be_read(small_runs):
    """What a reviewer finds in the MLflow store after the chain, read through MLflow's own
    client: named stage runs with descriptions, dataset inputs, a logged model per trained
    checkpoint with the evaluation linked to it, and the registered model with `best`."""
    from pipelines.workspace import mlflow_tracking_uri

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    run_id = small_runs.resumed.mlflow_run_id
    parent = client.get_run(run_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.info.run_name == "small"
    assert "End-to-end run `small`" in parent.data.tags["mlflow.note.content"]
    # The parent's summary: final losses, the task's headline score, the win rate.
    assert {
        "loss/val/pretrain",
        "loss/val/finetune",
        "eval/wikitext2-perplexity/word_perplexity",
        "win_rate/pretrained_vs_finetuned",
    } <= set(parent.data.metrics)

    every = client.search_runs([experiment.experiment_id], max_results=500)
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == run_id]
    assert sorted(r.info.run_name for r in children) == sorted(STAGES)
    # The stages this run reused point at the runs that did the work: those hold the data.
    worked = {
        r.data.tags["gpt2lab.stage"]: client.get_run(
            r.data.tags.get("gpt2lab.cached_from", r.info.run_id)
        )
        for r in children
    }
    for stage, run in worked.items():
        assert run.info.run_name == stage and run.data.tags["mlflow.note.content"], stage
        assert run.data.tags["prefect.flow_run_name"] and run.data.tags["prefect.flow_run_url"]
        # Params a person compares (a few dozen at most); the whole config in config.json.
        assert 0 < len(run.data.params) <= 30, (stage, len(run.data.params))
        assert "config.json" in {a.path for a in client.list_artifacts(run.info.run_id)}, stage

    def datasets(run) -> dict[str, str]:
        return {
            d.dataset.name: {t.key: t.value for t in d.tags}["mlflow.data.context"]
            for d in client.get_run(run.info.run_id).inputs.dataset_inputs
        }

    assert datasets(worked["corpus"])["corpus"] == "output"
    assert datasets(worked["encode"]) == {"corpus": "input", "tokens": "output"}
    assert datasets(worked["pretrain"]) == {"tokens": "training"}
    assert datasets(worked["finetune"]) == {"style-set.txt": "training"}
    corpus_digest = {
        d.dataset.name: d.dataset.digest
        for d in client.get_run(worked["encode"].info.run_id).inputs.dataset_inputs
    }["corpus"]
    assert corpus_digest == small_runs.resumed.outputs["corpus"]["fingerprint"][:32]
    tasks = [
        r for r in every if r.data.tags.get("mlflow.parentRunId") == worked["evaluate"].info.run_id
    ]
    (task,) = tasks
    assert datasets(task) == {"wikitext2-perplexity": "evaluation"}
    finetuned = small_runs.resumed.outputs["finetune"]
    assert task.data.params["model"] == finetuned["checkpoint"]

    # One logged model per checkpoint, tagged with its fingerprint and lineage, the
    # validation loss of its step linked to it: the step checkpoint (every 4 steps of 8 in
    # pretraining, 2 of 4 in fine-tuning) points at its folder, the final one ("model")
    # holds the weights.
    models = {}
    for stage, middle in zip(TRAINING_STAGES, ("step-000004", "step-000002"), strict=True):
        logged = client.search_logged_models(
            [experiment.experiment_id],
            filter_string=f"source_run_id = '{worked[stage].info.run_id}'",
        )
        by_name = {m.name: m for m in logged}
        assert set(by_name) == {middle, "model"}, stage
        outputs = client.get_run(worked[stage].info.run_id).outputs.model_outputs
        assert {o.model_id for o in outputs} == {m.model_id for m in logged}, stage
        for model in logged:
            assert model.tags["gpt2lab.fingerprint"] and model.tags["gpt2lab.lineage.tokenizer"]
            assert "loss/val" in {m.key for m in model.metrics}
        model = by_name["model"]
        assert model.tags["gpt2lab.fingerprint"] == small_runs.resumed.outputs[stage]["fingerprint"]
        assert by_name[middle].tags["gpt2lab.checkpoint"].endswith(f"checkpoints/{middle}")
        models[stage] = model
    # The evaluation's scores are linked to the fine-tuned model and to the task's rows.
    linked = {m.key: m for m in client.get_logged_model(models["finetune"].model_id).metrics}
    assert linked["word_perplexity"].dataset_name == "wikitext2-perplexity"
    assert linked["word_perplexity"].run_id == task.info.run_id
    (scored,) = client.get_run(task.info.run_id).inputs.model_inputs
    assert scored.model_id == models["finetune"].model_id

    # The fine-tuned model is registered, `best` on it, its validation data named.
    best = client.get_model_version_by_alias("gpt2lab-small", "best")
    assert best.run_id == worked["finetune"].info.run_id
    assert best.source == f"models:/{models['finetune'].model_id}"
    assert best.tags["gpt2lab.val_data"] and best.tags["val_loss"]

    # The simulated judge scored with neither model: bigram models of both training sets.
    judge = worked["preferences"].data.tags["gpt2lab.judge_reference"]
    assert "mixed with equal weights" in judge
    assert small_runs.resumed.outputs["encode"]["tokens"] in judge
    assert small_runs.resumed.outputs["finetune"]["tokens"] in judge

    # Continuations a person can judge: none ended before its 8th token (min_new_tokens),
    # and a token is at least one byte.
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from tasks.preferences.store import Sample, open_database

    engine = open_database(f"sqlite:///{small_runs.workspace / 'preferences.db'}")
    with Session(engine) as session:
        texts = session.scalars(select(Sample.text)).all()
    engine.dispose()
    assert texts and min(len(text.encode()) for text in texts) >= 8


@pytest.fixture
def mlflow_ui(small_runs, tmp_path) -> Iterator[str]:
    """The real `mlflow server` on 127.0.0.1 over the small runs' store; its URL."""
    import sys

    from pipelines.services import answers, free_port, spawn, wait_until_up

    port = free_port()
    store = f"sqlite:///{(small_runs.workspace / 'mlflow.db').as_posix()}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store]
    command += ["--default-artifact-root", (small_runs.workspace / "mlartifacts").as_uri()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tmp_path / "mlflow-server.log"
    # Its own process group: `mlflow server` runs the web server as a child process, and
    # SIGTERM to the group stops both at once (to the parent alone it takes many seconds).
    server = spawn(command, log, detached=True, dies_with_parent=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up("mlflow server", lambda: answers(f"{url}/health"), server, log, 120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


UI_WAIT_MS = 60_000  # for the UI's scripts to load and fetch on a busy machine; not a timing check


@pytest.mark.slow
def test_the_mlflow_ui_shows_the_stages_their_data_and_the_registered_model(
    small_runs, mlflow_ui, browser, tmp_path
):
    """A person opening MLflow's own UI finds the end-to-end run's stages and data by name,
    and the registered fine-tuned model with its `best` alias; the pages `gpt2lab ui` links
    open in MLflow's model-training view. Screenshots of the pages go to
    $GPT2LAB_UI_SCREENSHOTS when set (for the docs), else beside the test's files."""
    from playwright.sync_api import expect

    from pipelines.ui import mlflow_pages
    from pipelines.workspace import mlflow_tracking_uri

    shots = Path(os.environ.get("GPT2LAB_UI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    run = client.get_run(small_runs.resumed.mlflow_run_id)
    page = browser.new_page(viewport={"width": 1600, "height": 1400})

    view = "?workflowType=machine_learning"  # the model-training view, as gpt2lab links it
    experiment = f"{mlflow_ui}/#/experiments/{run.info.experiment_id}"
    page.goto(f"{experiment}/runs/{run.info.run_id}{view}")
    # The run page: its description, the stage runs under it, the data it read and wrote
    # (the first dataset shown, the others behind "+2").
    expect(page.get_by_text("End-to-end run", exact=False).first).to_be_visible(timeout=UI_WAIT_MS)
    for stage in STAGES:
        expect(page.get_by_role("link", name=stage, exact=True).first).to_be_visible(
            timeout=UI_WAIT_MS
        )
    expect(page.get_by_text("corpus (", exact=False).first).to_be_visible(timeout=UI_WAIT_MS)
    page.get_by_text("+2", exact=True).first.click()
    for dataset in ("tokens (", "style-set.txt ("):
        expect(page.get_by_text(dataset, exact=False).first).to_be_visible(timeout=UI_WAIT_MS)
    page.screenshot(path=str(shots / "end-to-end-run.png"), full_page=True)

    # The pretraining stage's run lists its checkpoints as logged models: the step one and
    # the final one.
    (step_model,) = [
        m for m in client.search_logged_models([run.info.experiment_id]) if m.name == "step-000004"
    ]
    page.goto(f"{experiment}/runs/{step_model.source_run_id}{view}")
    expect(page.get_by_text("Logged models (2)").first).to_be_visible(timeout=UI_WAIT_MS)
    for name in ("step-000004", "model"):
        expect(page.get_by_role("link", name=name, exact=True).first).to_be_visible(
            timeout=UI_WAIT_MS
        )
    page.screenshot(path=str(shots / "pretrain-run.png"), full_page=True)

    # The pages `gpt2lab ui` prints, in the model-training view: its menu has the model
    # registry (the GenAI view's has prompts and traces instead).
    pages = dict(mlflow_pages(mlflow_ui))
    training_view_menu = page.get_by_role("link", name="Model registry", exact=True)

    def open_printed(link: str) -> None:
        """A full page load, as a link opened from the terminal: no view left over."""
        page.goto("about:blank")
        page.goto(link)

    open_printed(pages["experiments"])
    expect(page.get_by_text("end-to-end", exact=True).first).to_be_visible(timeout=UI_WAIT_MS)
    expect(training_view_menu.first).to_be_visible(timeout=UI_WAIT_MS)

    # The experiment's runs table, with the Dataset column filled, not the GenAI traces view.
    open_printed(pages["end-to-end runs"])
    expect(page.get_by_text("small", exact=True).first).to_be_visible(timeout=UI_WAIT_MS)
    expect(training_view_menu.first).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_text("Dataset", exact=True).first).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_text("corpus (", exact=False).first).to_be_visible(timeout=UI_WAIT_MS)
    page.screenshot(path=str(shots / "end-to-end-experiment.png"), full_page=True)

    open_printed(pages["registered model gpt2lab-small"])
    expect(page.get_by_text(re.compile(r"@\s*best")).first).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_text("Version 1").first).to_be_visible(timeout=UI_WAIT_MS)
    expect(training_view_menu.first).to_be_visible(timeout=UI_WAIT_MS)
    page.screenshot(path=str(shots / "registered-model.png"), full_page=True)
