"""Scores: equal to the reference tools, perfect for an oracle, baselines as defined."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from tasks.evals.metrics import (
    _rouge_pair,
    corpus_bleu,
    corpus_rouge,
    lede_3,
    random_3,
    rouge1,
    sentence_bleu,
    sentences,
    strip_byline,
)
from tasks.evals.registry import get_tasks

REFERENCES = [
    "Le musée ouvre à neuf heures du matin.",
    "Mon frère habite dans un petit village près de la mer.",
    "Nous prendrons le train pour Paris demain.",
]
OUTPUTS = [
    "Le musée ouvre à neuf heures.",
    "Mon frère vit dans un village près de la mer.",
    "Demain nous prenons le train de Paris.",
]
ARTICLE = (
    "First sentence here. Second one follows! Is this the third? "
    'A fourth, with "quotes." Then a fifth. And the sixth.'
)


def test_an_oracle_scores_bleu_100_and_rouge_100():
    score, signature = corpus_bleu(REFERENCES, REFERENCES)
    assert score == pytest.approx(100.0)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert all(
        value == pytest.approx(100.0) for value in corpus_rouge(REFERENCES, REFERENCES).values()
    )


def test_bleu_equals_the_sacrebleu_command_line(tmp_path: Path):
    (tmp_path / "ref.txt").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(OUTPUTS) + "\n", encoding="utf-8")
    cli = Path(sys.executable).with_name("sacrebleu")
    printed = subprocess.run(
        [str(cli), str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"), "-b", "-w", "6"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours, _ = corpus_bleu(OUTPUTS, REFERENCES)
    assert 0 < ours < 100
    assert ours == pytest.approx(float(printed), abs=1e-5)


def test_rouge_equals_rouge_score_called_directly_on_the_papers_0_to_100_scale():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    direct = [scorer.score(ref, out) for ref, out in zip(REFERENCES, OUTPUTS, strict=True)]
    ours = corpus_rouge(OUTPUTS, REFERENCES)
    for name in ("rouge1", "rouge2", "rougeL"):
        mean = sum(s[name].fmeasure for s in direct) / len(direct)
        assert ours[name] == pytest.approx(100 * mean)


def test_rouge_is_on_0_to_100_as_the_paper_prints_it():
    """A worked case: 2 of the output's 3 words in the 4-word reference give rouge-score a
    ROUGE-1 F1 of 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7; gpt2lab reports 400/7 = 57.14."""
    output, reference = "the cat sat", "a cat sat down"
    fraction = rouge_scorer.RougeScorer(["rouge1"]).score(reference, output)["rouge1"].fmeasure
    assert fraction == pytest.approx(4 / 7)
    assert corpus_rouge([output], [reference])["rouge1"] == pytest.approx(400 / 7)
    assert rouge1(output, reference) == pytest.approx(400 / 7)


def test_empty_outputs_score_zero_instead_of_failing():
    assert corpus_bleu(["", "", ""], REFERENCES)[0] == 0.0
    assert all(v == 0.0 for v in corpus_rouge(["", "", ""], REFERENCES).values())


def test_lede_3_and_random_3_are_as_defined():
    found = sentences(ARTICLE)
    assert len(found) == 6 and found[3] == 'A fourth, with "quotes."'
    assert lede_3(ARTICLE) == " ".join(found[:3])
    picked = random_3(ARTICLE, seed=7)
    assert picked == random_3(ARTICLE, seed=7)  # repeatable
    chosen = [s for s in found if s in picked]
    assert len(chosen) == 3 and picked == " ".join(chosen)  # three, in article order
    assert {random_3(ARTICLE, seed=s) for s in range(20)} != {picked}  # and really random


def test_sentences_survive_abbreviations_and_bylines():
    text = (
        "Mr. Smith went to Washington D.C. on Monday. The U.S. economy grew 3.5 per cent. "
        '"It was great," he said. Then he left!'
    )
    assert sentences(text) == [
        "Mr. Smith went to Washington D.C. on Monday.",
        "The U.S. economy grew 3.5 per cent.",
        '"It was great," he said.',
        "Then he left!",
    ]
    daily_mail = (
        "By . Daily Mail Reporter . PUBLISHED: . 12:01 EST, 3 March 2014 . | . UPDATED: . "
        "13:45 EST, 3 March 2014 . " + text
    )
    assert strip_byline(daily_mail) == text
    assert lede_3(daily_mail) == " ".join(sentences(text)[:3])
    assert strip_byline("By . Sam Webb and Reuters Reporter . A fire broke out.") == (
        "A fire broke out."
    )
    # Ordinary prose that starts with "By" is left alone.
    assert (
        strip_byline("By the time he came . it was over.") == "By the time he came . it was over."
    )


def test_r_avg_is_the_papers_mean_of_rouge_1_2_and_summary_level_l():
    scores = corpus_rouge(OUTPUTS, REFERENCES)
    assert scores["r_avg"] == pytest.approx(
        (scores["rouge1"] + scores["rouge2"] + scores["rougeLsum"]) / 3
    )
    # rougeLsum reads sentences one per line: equal to rouge-score's own on such input.
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    two = ("The cat sat. The dog ran.", "The dog ran. A cat sat down.")
    direct = scorer.score("The dog ran.\nA cat sat down.", "The cat sat.\nThe dog ran.")
    assert corpus_rouge([two[0]], [two[1]])["rougeLsum"] == pytest.approx(
        100 * direct["rougeLsum"].fmeasure
    )


def test_per_example_scores_for_the_examples_table():
    assert sentence_bleu(REFERENCES[0], REFERENCES[0]) == pytest.approx(100.0)
    assert 0 < sentence_bleu(OUTPUTS[0], REFERENCES[0]) < 100
    assert rouge1(REFERENCES[1], REFERENCES[1]) == pytest.approx(100.0)
    assert rouge1("", REFERENCES[1]) == 0.0


BYLINE = (
    "By . Jane Doe . PUBLISHED: . 12:00 EST, 1 January 2014 . | . UPDATED: . 13:10 EST, "
    "1 January 2014 . "
)
STORY = (
    "The U.S. team arrived on Monday. Mr. Smith, its captain, said the 3 p.m. start suited "
    'them. "We are ready," he said. The match is sold out. Tickets cost $20.50 each.'
)


def test_sentences_are_split_by_pysbd_not_at_every_full_stop():
    assert sentences(STORY) == [
        "The U.S. team arrived on Monday.",
        "Mr. Smith, its captain, said the 3 p.m. start suited them.",
        '"We are ready," he said.',
        "The match is sold out.",
        "Tickets cost $20.50 each.",
    ]
    # A line break always ends a sentence (references are one highlight per line).
    assert sentences("Rain fell\nRoads closed.") == ["Rain fell", "Roads closed."]


@pytest.mark.parametrize(
    "header",
    [
        BYLINE,
        "By . Daily Mail Reporter . ",
        "By . Jane Doe . and . John Roe . UPDATED: . 09:41 EST, 3 March 2013 . ",
        "Last updated at 3:45 PM on 12th March 2011 . ",
        "By . Sam Webb . Last updated at 10:58 AM on 29th January 2012 . ",
    ],
)
def test_a_daily_mail_byline_is_not_part_of_the_story(header):
    assert strip_byline(header + STORY) == STORY
    assert lede_3(header + STORY) == " ".join(sentences(STORY)[:3])
    picked = random_3(header + STORY, seed=1)
    assert all(s in sentences(STORY) for s in sentences(picked))
    # The model's summary loses a byline it copied, too.
    (task,) = get_tasks(["cnn-dailymail-tldr"])
    assert task.postprocess(" " + header + STORY) == " ".join(sentences(STORY)[:3])


def test_text_without_a_byline_is_left_alone():
    cnn = "(CNN) -- By the end of the day, the U.S. team had won. It was their first title."
    assert strip_byline(cnn) == cnn
    assert strip_byline(STORY) == STORY


def test_rouge_lsum_is_rouge_score_s_with_one_sentence_per_line_and_r_avg_its_mean():
    output = "Mr. Smith said the team was ready. The U.S. side arrived on Monday."
    reference = "The U.S. team arrived on Monday.\nThe match is sold out."
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
    direct = scorer.score(reference, "\n".join(sentences(output)))
    ours = corpus_rouge([output], [reference])
    for name in ("rouge1", "rouge2", "rougeLsum"):
        assert ours[name] == pytest.approx(100 * direct[name].fmeasure)
    # Summary-level LCS differs from the LCS over the whole text (rougeL).
    assert ours["rougeLsum"] != pytest.approx(ours["rougeL"])
    mean = (ours["rouge1"] + ours["rouge2"] + ours["rougeLsum"]) / 3
    assert ours["r_avg"] == pytest.approx(mean)


def test_rescoring_a_resample_reuses_each_pair_s_score():
    """A bootstrap scores resamples of the same rows: each pair is computed once."""
    outputs = [f"Output {i}. It has two sentences." for i in range(20)]
    references = [f"Reference {i}.\nIts second line." for i in range(20)]
    first = corpus_rouge(outputs, references)
    before = _rouge_pair.cache_info()
    resample = [random.Random(7).randrange(20) for _ in range(20)]
    corpus_rouge([outputs[i] for i in resample], [references[i] for i in resample])
    after = _rouge_pair.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 20
    assert corpus_rouge(outputs, references) == first
