"""`gpt2lab experiment stylistic` refuses bad settings in one line, before any work."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


def test_bad_settings_are_one_line_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2LAB_HOME", str(tmp_path / "workspace"))
    monkeypatch.chdir(tmp_path)
    small = runner.invoke(app, ["experiment", "stylistic", "--curve", "5,500"])
    assert small.exit_code == 2, small.output
    assert "curve" in small.output and "10 or more" in small.output
    assert "Traceback" not in small.output and len(small.output.strip().splitlines()) == 1
    words = runner.invoke(app, ["experiment", "stylistic", "--curve", "500,many"])
    assert words.exit_code == 2 and "many" in words.output, words.output
    many = runner.invoke(app, ["experiment", "stylistic", "--comparisons", "9000"])
    assert many.exit_code == 2 and "make 9000" in many.output, many.output
    rate = runner.invoke(app, ["experiment", "stylistic", "--mistake-rate", "1.5"])
    assert rate.exit_code == 2 and "mistake_rate" in rate.output, rate.output
