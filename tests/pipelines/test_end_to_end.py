"""The end-to-end flow on a very small config: every stage runs once and lands in one
MLflow tree with a report; a failing stage stops the run with its name, a rerun goes on
from it, and a run with nothing changed skips every stage."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from pipelines.end_to_end import EndToEndConfig, end_to_end_flow
from reports.mlflow_names import STAGES

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


@pytest.mark.slow
def test_stages_run_once_resume_after_a_failure_and_are_skipped_when_unchanged(
    workspace, prefect_harness, caplog
):
    broken = EndToEndConfig(name="small", **{**SMALL, "evaluate": {"tasks": ["no-such-task"]}})
    with pytest.raises(RuntimeError, match="stage evaluate failed: .*no-such-task"):
        end_to_end_flow(broken)

    config = EndToEndConfig(name="small", **SMALL)
    with caplog.at_level("INFO"):
        resumed = end_to_end_flow(config)
    done_before = ("corpus", "encode", "pretrain", "finetune")
    # One progress line per stage: where the run is, out of how many, and since when.
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage ")]
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

    again = end_to_end_flow(config)
    assert again.stages == dict.fromkeys(STAGES, "cached")
    assert again.outputs["finetune"]["checkpoint"] == resumed.outputs["finetune"]["checkpoint"]

    # gpt2lab report: the two runs side by side, rendered from MLflow.
    from typer.testing import CliRunner

    from pipelines.cli import app

    shown = CliRunner().invoke(app, ["report", resumed.mlflow_run_id, again.mlflow_run_id])
    assert shown.exit_code == 0, shown.output
    page = (
        workspace
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
