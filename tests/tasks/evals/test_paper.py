"""The GPT-2 paper's figures: per model size, attached to the metrics that measure the same
thing, and carried into results as plain JSON."""

from __future__ import annotations

import json

import pytest

from model import GPT, GPTConfig, load_tokenizer
from tasks.evals.data import read_rows
from tasks.evals.paper import (
    SIZES,
    TABLE_3,
    TABLE_3_COLUMNS,
    TABLE_4,
    PaperFigure,
    size_for,
    table_3,
)
from tasks.evals.registry import all_tasks, get_tasks
from tasks.evals.runner import evaluate_task
from tasks.evals.task import ChoiceLikelihoods, ContinuationLikelihood, TextLikelihood

LABELS = [size.name for size in SIZES]


def test_the_four_sizes_smallest_first_with_the_released_parameter_counts():
    assert LABELS == ["117M", "345M", "762M", "1542M"]
    counts = [size.parameters for size in SIZES]
    assert counts == [124_439_808, 354_823_168, 774_030_080, 1_557_611_200]


@pytest.mark.parametrize(
    ("parameters", "label"),
    [
        (1_000, "117M"),  # a teaching model: compared with the smallest
        (124_439_808, "117M"),
        (200_000_000, "117M"),  # below the geometric middle of 124M and 355M (210M)
        (220_000_000, "345M"),
        (354_823_168, "345M"),
        (774_030_080, "762M"),
        (1_100_000_000, "1542M"),  # above the geometric middle of 774M and 1558M (1098M)
        (1_557_611_200, "1542M"),
        (10_000_000_000, "1542M"),
    ],
)
def test_a_model_is_compared_with_the_nearest_size_on_a_log_scale(parameters, label):
    assert size_for(parameters).name == label


def test_table_3_has_every_column_and_size():
    assert set(TABLE_3) == set(TABLE_3_COLUMNS)
    assert len(TABLE_3_COLUMNS) == 10
    for column, by_size in TABLE_3.items():
        assert list(by_size) == LABELS, column
    assert TABLE_3["WikiText2 (PPL)"] == {
        "117M": 29.41,
        "345M": 22.76,
        "762M": 19.93,
        "1542M": 18.34,
    }
    # Accuracies as fractions (the paper prints percent).
    assert TABLE_3["CBT-NE (ACC)"]["1542M"] == 0.8905 and TABLE_3["1BW (PPL)"]["762M"] == 44.575
    # Bigger is better everywhere in the table except CBT-CN at 1542M (93.30 < 93.45).
    for column, by_size in TABLE_3.items():
        values = list(by_size.values())
        lower_is_better = "ACC" not in column
        ordered = sorted(values, reverse=lower_is_better)
        assert values == ordered or column == "CBT-CN (ACC)", column


def test_a_table_3_column_in_our_units():
    accuracy = table_3("LAMBADA (ACC)", note="judged differently")
    assert accuracy.by_size == {"117M": 0.4599, "345M": 0.5548, "762M": 0.6012, "1542M": 0.6324}
    assert accuracy.source == "Table 3, LAMBADA (ACC)" and accuracy.note == "judged differently"
    with pytest.raises(KeyError, match="no column 'LAMBADA'"):
        table_3("LAMBADA")


def test_table_4_r_avg_is_the_mean_of_its_three_rouge_columns():
    """A check on the transcription: the paper's R-AVG, recomputed, rounds to itself."""
    for row, columns in TABLE_4.items():
        mean = (columns["R-1"] + columns["R-2"] + columns["R-L"]) / 3
        assert mean == pytest.approx(columns["R-AVG"], abs=0.006), row


def _scores(task) -> dict[str, float]:
    """The task's metrics on its local rows (measurements made up: only names matter)."""
    rows = read_rows(task.data.local, task.fields)
    references = [task.reference(row) for row in rows]
    outputs = {
        "generate": references,
        "perplexity": [TextLikelihood(nll=10.0, tokens=5, bytes=20)] * len(rows),
        "loglikelihood": [ContinuationLikelihood(nll=1.0, greedy=True, word_ends=True)] * len(rows),
        "choice": [ChoiceLikelihoods(nll=[2.0, 1.0], tokens=[3, 2], written="")] * len(rows),
    }[task.kind]
    return dict(task.score(outputs, references, rows))


@pytest.mark.parametrize("name", sorted(all_tasks()))
def test_every_paper_figure_names_a_metric_of_its_task_and_a_paper_size(name):
    (task,) = get_tasks([name])
    scores = _scores(task)
    for metric, figure in task.paper.items():
        assert isinstance(figure, PaperFigure)
        assert metric in scores and not isinstance(scores[metric], str), metric
        assert figure.by_size and set(figure.by_size) <= set(LABELS), metric
        assert figure.source.startswith(("Table 3, ", "Table 4, ", "Section 3.7, "))


def test_each_task_carries_the_figures_that_measure_the_same_thing():
    tasks = all_tasks()
    wikitext = tasks["wikitext2-perplexity"].paper
    assert set(wikitext) == {"word_perplexity"}  # per word, not per token or byte
    assert wikitext["word_perplexity"].by_size["117M"] == 29.41
    lambada = tasks["lambada"].paper
    assert set(lambada) == {"accuracy", "perplexity"}
    assert lambada["accuracy"].by_size["1542M"] == pytest.approx(0.6324)
    assert "stop" in lambada["accuracy"].note  # says how the paper judged differently
    tldr = tasks["cnn-dailymail-tldr"].paper
    # Table 4's R-L is summary-level: rougeLsum carries it, rougeL (plain LCS) does not.
    assert "rougeL" not in tldr and tldr["rougeLsum"].by_size == {"1542M": 26.58}
    assert tldr["r_avg"].by_size == {"1542M": 21.40}
    assert tldr["lede3/r_avg"].by_size == {"1542M": 31.55}
    assert tldr["random3/rouge2"].by_size == {"1542M": 8.63}
    assert "baseline" in tldr["lede3/rouge1"].note
    assert tasks["cnn-dailymail-no-hint"].paper["rouge1"].by_size == {"1542M": 21.58}
    assert tasks["wmt14-fr-en"].paper["bleu"].by_size == {"1542M": 11.5}
    assert tasks["wmt14-en-fr"].paper["bleu"].by_size == {"1542M": 5.0}


def test_a_result_carries_the_figures_as_plain_json(gpt2_vocab_dir):
    (task,) = get_tasks(["lambada"])
    model = GPT(GPTConfig.preset("tiny", block_size=64)).eval()
    result = evaluate_task(task, model, load_tokenizer(gpt2_vocab_dir), "tiny", limit=1)
    again = json.loads(json.dumps(result.to_dict()))
    assert again["paper"]["perplexity"] == {
        "by_size": {"117M": 35.13, "345M": 15.6, "762M": 10.87, "1542M": 8.63},
        "source": "Table 3, LAMBADA (PPL)",
        "note": "",
    }
    assert again["paper"]["accuracy"]["by_size"]["117M"] == 0.4599


def test_beside_a_model_the_figure_of_its_size_or_a_plain_mark_of_another():
    from tasks.evals.beside_paper import beside_paper

    lambada, wmt = get_tasks(["lambada", "wmt14-en-fr"])
    tiny = beside_paper(lambada.paper, parameters=250_000)["accuracy"]
    assert (tiny.model_size, tiny.paper_size, tiny.same_size) == ("117M", "117M", True)
    assert tiny.label == "0.4599 (117M)"
    medium = beside_paper(lambada.paper, parameters=354_823_168)["perplexity"]
    assert (medium.paper_size, medium.value) == ("345M", 15.6)
    bleu = beside_paper(wmt.paper, parameters=124_439_808)["bleu"]
    assert (bleu.model_size, bleu.paper_size, bleu.same_size) == ("117M", "1542M", False)
    assert bleu.label == "5 (1542M only)" and "only for 1542M" in bleu.note
