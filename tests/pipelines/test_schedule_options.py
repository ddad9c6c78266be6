"""`gpt2lab schedule --work-pool`: mistakes are one line, before anything is deployed."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.services import free_port

runner = CliRunner()


def test_a_work_pool_needs_a_prefect_server_that_answers(workspace, monkeypatch):
    api = f"http://127.0.0.1:{free_port()}/api"  # nobody listens there
    monkeypatch.setenv("PREFECT_API_URL", api)
    result = runner.invoke(app, ["schedule", "--work-pool", "gpt2lab", "--cron", "0 3 * * *"])
    assert result.exit_code == 2
    assert f"no Prefect server answers at {api}: start one with `gpt2lab ui`" in result.output


def test_a_work_pool_schedule_takes_exactly_one_of_cron_and_interval(workspace):
    both = ["--cron", "0 3 * * *", "--interval", "60"]
    result = runner.invoke(app, ["schedule", "--work-pool", "gpt2lab", *both])
    assert result.exit_code == 2
    assert "give exactly one of --cron or --interval" in result.output
