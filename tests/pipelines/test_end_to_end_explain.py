"""The end-to-end run's explain page: the fine-tuned model on its first fixed prompt,
written beside the report and logged to the run (the full flow: test_end_to_end.py)."""

from __future__ import annotations

from pipelines.end_to_end import EndToEndConfig, _explain_page
from pipelines.tracking import tracked_run
from reports.mlflow_names import END_TO_END_EXPERIMENT

from .test_evaluate_flow import tiny_model


def test_the_run_writes_and_logs_an_explain_page(workspace, gpt2_vocab_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    checkpoint = tiny_model(tmp_path / "finetune", gpt2_vocab_dir, seed=0)
    config = EndToEndConfig(name="explained")
    with tracked_run(END_TO_END_EXPERIMENT, config.name) as run:
        pass
    page = _explain_page(config, str(checkpoint), run.info.run_id)

    assert page == config.run_dir() / "explain" / "explain.html"
    html = page.read_text(encoding="utf-8")
    assert "<pre>The meaning of</pre>" in html  # the fine-tune stage's first fixed prompt
    assert "Inside GPT-2: explained, fine-tuned" in html
    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    logged = [a.path for a in client.list_artifacts(run.info.run_id, "explain")]
    assert logged == ["explain/explain.html"]
