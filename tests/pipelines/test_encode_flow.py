"""The encode flow end to end: the CLI, real Prefect, real MLflow, shards on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.encode import EncodeConfig, run_encode
from tasks.encode.token_shards import read_meta
from tests.tasks.encode.conftest import varied_corpus

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return varied_corpus(tmp_path / "corpus", 120_000, seed=11)


def _mlflow_run(run_id: str):
    from mlflow.tracking import MlflowClient

    from pipelines.workspace import mlflow_tracking_uri

    client = MlflowClient(tracking_uri=mlflow_tracking_uri())
    return client, client.get_run(run_id)


def test_encode_command_writes_shards_and_tracks_them(
    workspace, prefect_harness, corpus, tmp_path, gpt2_vocab_dir
):
    out = tmp_path / "tokens"
    args = [
        "encode",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--tokenizer",
        str(gpt2_vocab_dir),
        "--val-fraction",
        "0.1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = read_meta(out)
    assert f"train {meta.tokens['train']:,}" in result.output
    assert meta.tokens["val"] > 0 and meta.dtype == "uint16"

    run_id = result.output.split("MLflow run ")[1].split()[0]
    client, run = _mlflow_run(run_id)
    metrics = run.data.metrics
    assert metrics["tokens/train"] == meta.tokens["train"]
    assert metrics["documents/val"] == meta.documents["val"]
    assert 2.0 < metrics["bytes_per_token"] < 6.0  # GPT-2 BPE on mixed text
    assert metrics["throughput_mb_per_s"] > 0
    tags = run.data.tags
    assert tags["gpt2lab.lineage.corpus"] == "c" * 64
    assert tags["gpt2lab.lineage.tokens"] == meta.fingerprint
    assert tags["gpt2lab.lineage.tokenizer"] == meta.tokenizer["fingerprint"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    artifacts |= {a.path for a in client.list_artifacts(run_id, "tokenizer")}
    assert {"tokens.json", "tokenizer/encoder.json", "tokenizer/vocab.bpe"} <= artifacts

    # Again with the same settings: nothing is encoded twice, the result is the same.
    again = run_encode(
        EncodeConfig(corpus=corpus, out=out, tokenizer=str(gpt2_vocab_dir), val_fraction=0.1)
    )
    assert again.parts_encoded == 0 and again.fingerprint == meta.fingerprint


def test_a_trained_bpe_logs_its_first_merges(workspace, prefect_harness, corpus, tmp_path):
    config = EncodeConfig(
        corpus=corpus,
        out=tmp_path / "tokens",
        train_tokenizer=True,
        vocab_size=320,
        shard_mb=0.03,
        val_fraction=0.1,  # 56 documents: the default 0.5% would hold out none
    )
    result = run_encode(config)
    assert result.parts_encoded >= 3  # 120 KB of text in parts of 30 KB
    client, run = _mlflow_run(result.mlflow_run_id)
    assert run.data.params["vocab_size"] == "320"
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "first_merges.json")).read_text()
    )
    assert table["columns"] == ["rank", "left", "right", "token"]
    rank, left, right, token = table["data"][0]
    assert rank == 1 and token == left + right


def test_encode_options_are_checked_before_anything_runs(tmp_path, corpus):
    both = runner.invoke(
        app,
        [
            "encode",
            "--corpus",
            str(corpus),
            "--out",
            str(tmp_path / "t"),
            "--tokenizer",
            "gpt2",
            "--train-tokenizer",
        ],
    )
    assert both.exit_code == 2 and "not both" in both.output
    no_size = runner.invoke(
        app, ["encode", "--corpus", str(corpus), "--out", str(tmp_path / "t"), "--train-tokenizer"]
    )
    assert no_size.exit_code == 2 and "needs vocab_size" in no_size.output
    assert not (tmp_path / "t").exists()
