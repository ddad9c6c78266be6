"""Every score comes with n and a 95% interval; two models on the same rows are compared
paired, BLEU with sacrebleu's own bootstrap and test."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, load_tokenizer
from tasks.evals.data import task_rows
from tasks.evals.metrics import bleu_interval, bleu_paired, corpus_bleu
from tasks.evals.paired import paired_differences
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task

REFERENCES = [
    f"the {animal} sat on the mat number {i}"
    for i, animal in enumerate(["cat", "dog", "bird", "fox", "cow"] * 8)
]
# Outputs of uneven quality, row by row, as real ones are: the interval has a width.
GOOD = [ref if i % 3 else ref.replace("sat", "sits") for i, ref in enumerate(REFERENCES)]
POOR = [
    ref.replace("on the mat", "somewhere") if i % 2 else " ".join(ref.split()[: 2 + i % 5])
    for i, ref in enumerate(REFERENCES)
]


def test_bleu_interval_is_sacrebleus_confidence_interval(tmp_path: Path):
    (tmp_path / "ref.txt").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(POOR) + "\n", encoding="utf-8")
    cli = Path(sys.executable).with_name("sacrebleu")
    printed = subprocess.run(
        [
            str(cli),
            str(tmp_path / "ref.txt"),
            "-i",
            str(tmp_path / "hyp.txt"),
            "--confidence",
            "-w",
            "4",
            "-f",
            "text",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "BLEU|nrefs:1|bs:1000|seed:12345|... = 33.1234 (μ = 33.0000 ± 1.2345) ..."
    half_width = float(printed.split("± ")[1].split(")")[0])
    low, high = bleu_interval(POOR, REFERENCES)["bleu"]
    assert (high - low) / 2 == pytest.approx(half_width, abs=1e-3)  # sacrebleu's width
    assert 0 <= low < corpus_bleu(POOR, REFERENCES)[0] < high


def test_a_bleu_near_zero_keeps_its_interval_in_range():
    outputs = [f"word {i}" for i in range(len(REFERENCES))]
    outputs[0] = REFERENCES[0]  # one sentence right, the rest nothing alike
    low, high = bleu_interval(outputs, REFERENCES)["bleu"]
    assert 0 <= low <= corpus_bleu(outputs, REFERENCES)[0] <= high <= 100


def test_bleu_paired_says_the_better_system_is_better():
    (gain,) = bleu_paired(POOR, GOOD, REFERENCES, rows=None).values()
    assert gain.delta == pytest.approx(
        corpus_bleu(GOOD, REFERENCES)[0] - corpus_bleu(POOR, REFERENCES)[0]
    )
    assert gain.delta > 0 and gain.p_value < 0.01
    (same,) = bleu_paired(GOOD, GOOD, REFERENCES, rows=None).values()
    assert same.delta == 0 and same.p_value == 1.0


@pytest.fixture(scope="module")
def two_models():
    torch.manual_seed(0)
    first = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    torch.manual_seed(1)
    second = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    return first, second


def test_every_score_has_an_interval_over_the_rows_it_scored(two_models, gpt2_vocab_dir):
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    (lambada,) = get_tasks(["lambada"])
    result = evaluate_task(lambada, two_models[0], tokenizer, "tiny-a", limit=5)
    assert result.rows == 5
    assert set(result.intervals) == set(result.scores)
    for name, (low, high) in result.intervals.items():
        assert low <= result.scores[name] <= high, name
    again = evaluate_task(lambada, two_models[0], tokenizer, "tiny-a", limit=5)
    assert again.intervals == result.intervals  # seeded: the same every run
    fewer = evaluate_task(replace(lambada, bootstrap_resamples=0), two_models[0], tokenizer, "x")
    assert fewer.intervals == {}


def test_paired_differences_of_two_models_on_the_same_rows(two_models, gpt2_vocab_dir):
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    (lambada,) = get_tasks(["lambada"])
    rows = task_rows(lambada)
    a = evaluate_task(lambada, two_models[0], tokenizer, "tiny-a")
    b = evaluate_task(lambada, two_models[1], tokenizer, "tiny-b")
    found = paired_differences(lambada, a, b, rows)
    assert set(found) == set(a.scores)
    for name, diff in found.items():
        assert diff.delta == pytest.approx(b.scores[name] - a.scores[name])
        assert diff.low <= diff.delta <= diff.high
        assert 0 < diff.p_value <= 1
    itself = paired_differences(lambada, a, a, rows)
    assert all(d.delta == 0 and d.p_value == 1.0 for d in itself.values())
    with pytest.raises(ValueError, match="same 6 rows"):
        paired_differences(
            lambada, a, evaluate_task(lambada, two_models[1], tokenizer, "b", limit=2), rows
        )
