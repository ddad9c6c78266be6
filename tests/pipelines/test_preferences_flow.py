"""The preferences flow: a simulated judge fills a batch; people vote through the real
page while the flow waits; the wait ends at the deadline stored with the batch."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.comparison_server import page_is_up, stop_page
from pipelines.preferences import (
    PreferencesConfig,
    preferences_flow,
    preferences_report_flow,
)
from pipelines.services import free_port
from tasks.preferences.store import Batch, Vote, open_database

from .test_evaluate_flow import tiny_model

runner = CliRunner()


@pytest.fixture
def two_models(tmp_path, gpt2_vocab_dir) -> list[str]:
    return [
        str(tiny_model(tmp_path / name, gpt2_vocab_dir, seed))
        for seed, name in enumerate(["base", "tuned"])
    ]


def stored_votes(url: str) -> int:
    engine = open_database(url)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(Vote))
    engine.dispose()
    return count


def test_the_simulated_judge_fills_a_batch_logged_and_exported_apart_from_people(
    workspace, prefect_harness, two_models, tmp_path
):
    from datasets import load_from_disk
    from mlflow.tracking import MlflowClient

    url = f"sqlite:///{(tmp_path / 'p.db').as_posix()}"
    config = PreferencesConfig(
        models=two_models,
        n=6,
        judge="simulated",
        annotators=0,
        gold_fraction=0.5,
        repeat_fraction=0.5,
        database=url,
        max_new_tokens=12,
    )
    result = preferences_flow(config)
    assert (result.judge, result.ended_by, result.votes) == ("simulated", "simulated", 6)
    assert stored_votes(url) == 6 + 3 + 3  # the judge also answered gold items and repeats

    run = MlflowClient().get_run(result.mlflow_run_id)
    assert run.data.tags["gpt2lab.judge"] == "simulated"
    rate = run.data.metrics["win_rate/base_vs_tuned"]
    assert rate == result.summary["win_rate/base_vs_tuned"]
    assert run.data.metrics["win_rate_low/base_vs_tuned"] <= rate
    artifacts = {a.path for a in MlflowClient().list_artifacts(result.mlflow_run_id)}
    assert {"win_rates.png", "win_rates.json", "summary.md", "pairs", "votes.jsonl"} <= artifacts

    pairs = load_from_disk(str(result.export / "pairs"))
    assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names)
    decided = run.data.metrics["votes"] - run.data.metrics.get("ties/base_vs_tuned", 0)
    assert len(pairs) == decided
    assert all(row["chosen"] != row["rejected"] for row in pairs)

    again = preferences_flow(config)  # the same config: the same batch, nothing re-judged
    assert again.batch == result.batch and stored_votes(url) == 12
    people = preferences_report_flow(result.batch, "people", url)
    assert people.votes == 0  # simulated votes never count as human ones


def test_people_vote_on_the_page_while_the_flow_waits_for_the_target(
    workspace, prefect_harness, two_models, tmp_path
):
    url = f"sqlite:///{(tmp_path / 'p.db').as_posix()}"
    port = free_port()
    config = PreferencesConfig(
        models=two_models,
        n=3,
        annotators=1,
        gold_fraction=0,
        repeat_fraction=0,
        database=url,
        port=port,
        poll_seconds=0.2,
        max_new_tokens=8,
        batch="people-vote",
    )
    invites = workspace / "preferences" / "people-vote" / "invites.txt"
    votes_cast: list[int] = []

    def annotate() -> None:
        """An annotator who opens the invite link once the page is up and judges 3 items."""
        deadline = time.monotonic() + 120
        while not (invites.exists() and page_is_up(f"http://127.0.0.1:{port}")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        link = invites.read_text().split("\t")[1].strip()
        with httpx.Client(trust_env=False, follow_redirects=True) as browser:
            page = browser.get(link).text
            while "Which continuation" in page:
                fields = dict(re.findall(r'name="(item_id|csrf)" value="([^"]*)"', page))
                page = browser.post(
                    f"http://127.0.0.1:{port}/vote", data={**fields, "choice": "right"}
                ).text
                votes_cast.append(1)

    person = threading.Thread(target=annotate)
    person.start()
    try:
        result = preferences_flow(config)
    finally:
        person.join(timeout=60)
        stop_page(port)
    assert (result.judge, result.ended_by, result.votes) == ("people", "target", 3)
    assert len(votes_cast) == 3 and stored_votes(url) == 3
    assert not page_is_up(f"http://127.0.0.1:{port}")


def test_a_rerun_waits_for_the_deadline_stored_with_the_batch(
    workspace, prefect_harness, two_models, tmp_path
):
    url = f"sqlite:///{(tmp_path / 'p.db').as_posix()}"
    port = free_port()
    config = PreferencesConfig(
        models=two_models,
        n=2,
        annotators=0,
        database=url,
        port=port,
        poll_seconds=0.2,
        deadline_hours=3 / 3600,
        max_new_tokens=8,
    )
    try:
        first = preferences_flow(config)
        assert (first.ended_by, first.votes) == ("deadline", 0)
        # As after a crash: the same config again, now asking for a far deadline. The
        # batch keeps the end it was made with, so the wait is over at once.
        started = time.monotonic()
        again = preferences_flow(config.model_copy(update={"deadline_hours": 1000.0}))
        assert again.batch == first.batch and again.ended_by == "deadline"
        assert time.monotonic() - started < 60  # not 1000 hours
    finally:
        stop_page(port)
    engine = open_database(url)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 1
    engine.dispose()


def test_compare_makes_a_batch_and_prints_invite_links(workspace, two_models, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Once upon a time\n\nThe weather today\nOnce upon a time\n")
    url = f"sqlite:///{(tmp_path / 'p.db').as_posix()}"
    args = [
        "compare",
        "--models",
        *two_models,
        "--prompts",
        str(prompts),
        "--n",
        "5",
        "--annotators",
        "2",
        "--database",
        url,
        "--batch",
        "cli-batch",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    links = re.findall(r"http://127\.0\.0\.1:8765/join/[\w-]+", result.output)
    assert len(links) == 2
    invites = Path(workspace / "preferences" / "cli-batch" / "invites.txt")
    assert oct(invites.stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(app, args)
    assert "already exists" in again.output

    no_invites = runner.invoke(app, [*args[:-1], "cli-batch-2", "--annotators", "0"])
    assert no_invites.exit_code == 0, no_invites.output
    assert "with no invite links" in no_invites.output and "/join/" not in no_invites.output


def test_compare_names_a_bad_prompts_line(workspace, two_models, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"text": "no prompt field"}\n')
    result = runner.invoke(app, ["compare", *two_models, "--prompts", str(prompts)])
    assert result.exit_code == 2
    assert f"{prompts}:2: field 'prompt' is missing" in result.output
