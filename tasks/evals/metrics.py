"""Scores as the GPT-2 paper reports them: sacrebleu's BLEU, rouge-score's ROUGE (with the
paper's R-AVG), and the paper's two summarisation baselines (Random-3, Lede-3).

One scale per kind of score, in every task, so runs and tasks line up in MLflow's charts:
- text-overlap scores (BLEU, ROUGE, word F1) are on 0-100, as the GPT-2 paper (Table 4,
  section 3.7) and ConvAI2 print them; rouge-score's 0-1 F1 is multiplied by 100 here;
- shares of counted outcomes (accuracy, Hits@1, win rate) are fractions, 0-1;
- perplexity, bits and losses are in their natural units.
Intervals and paired differences are computed from the scores, so they share the scale.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache

import pysbd
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest, _bootstrap_resample

from tasks.evals.uncertainty import PairedDifference

# Sentences come from pysbd, a rule-based splitter that knows abbreviations ("Mr. ",
# "U.S. ", "Washington D.C. on"), decimals and quotations, and needs no downloaded model.
# The same splitter serves the model's output, the references and the baselines.
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)


@lru_cache(maxsize=65_536)  # bootstrap resampling re-scores the same texts many times
def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _SEGMENTER.segment(text) if part.strip())


def sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones left out."""
    return list(_split(text.strip())) if text.strip() else []


def first_sentences(text: str, n: int) -> str:
    return " ".join(sentences(text)[:n])


# Daily Mail articles in CNN/Daily Mail open with a byline and timestamps, sentence-split
# into fragments ("By . Daily Mail Reporter . PUBLISHED: . 12:01 EST, 3 March 2014 . | .
# UPDATED: . ..."). Left in, they would be "the first three sentences".
_NAME_WORD = r"(?:[A-Z][\w'’.-]*|and|for|de|van|von|da|del|le)"
_BYLINE_PARTS = (
    re.compile(rf"^By \.(?: {_NAME_WORD}(?: {_NAME_WORD})* \.)+ "),
    re.compile(r"^(?:PUBLISHED: \. .*? \. \| \. )?UPDATED: \. .*?\d{4} \. "),
    re.compile(r"^PUBLISHED: \. .*?\d{4} \. "),
    re.compile(r"^Last updated at .*?\d{4} \. "),
)


def strip_byline(article: str) -> str:
    """The article without a leading Daily Mail byline and publication timestamps."""
    text = article.lstrip()
    while True:
        for part in _BYLINE_PARTS:
            found = part.match(text)
            if found:
                text = text[found.end() :].lstrip()
                break
        else:
            return text


def corpus_bleu(outputs: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU of detokenized outputs against one reference each (sacrebleu's
    defaults: 13a tokenization, mixed case, exponential smoothing), and its signature,
    which says exactly how it was computed and should be reported with it."""
    bleu = BLEU()
    score = bleu.corpus_score(list(outputs), [list(references)])
    return score.score, str(bleu.get_signature())


BLEU_RESAMPLES = 1000


def bleu_interval(
    outputs: Sequence[str], references: Sequence[str], rows: object = None
) -> dict[str, tuple[float, float]]:
    """Corpus BLEU's 95% interval from sacrebleu's own bootstrap (what `sacrebleu
    --confidence` runs): 1,000 resamples of the per-sentence n-gram statistics, so it
    costs about one score, with sacrebleu's fixed seed (SACREBLEU_SEED, 12345 by default).

    sacrebleu prints the interval as "mean ± half-width", symmetric about the resamples'
    mean, which can dip below 0 for a BLEU near 0. The bounds here are the resampled
    scores at the same ranks it reads (the 2.5% and 97.5% ones), so the half-width is
    exactly sacrebleu's and the interval never leaves BLEU's range. Both calls are
    sacrebleu internals (`_extract_corpus_statistics`, `_bootstrap_resample`): the same
    ones its paired test uses."""
    bleu = BLEU()
    stats = bleu._extract_corpus_statistics(list(outputs), [list(references)])
    _, resampled = _bootstrap_resample(stats, bleu, BLEU_RESAMPLES)
    scores = sorted(score.score for score in resampled)
    tail = len(scores) // 40  # 2.5% of the resamples on each side, as sacrebleu counts
    return {"bleu": (scores[tail], scores[len(scores) - tail - 1])}


def bleu_paired(
    baseline: Sequence[str], candidate: Sequence[str], references: Sequence[str], rows: object
) -> dict[str, PairedDifference]:
    """candidate - baseline corpus BLEU with sacrebleu's paired bootstrap test (the Moses
    script's method): its p-value says how often chance alone gives such a gap. sacrebleu
    gives no interval for the difference itself, so low/high are NaN."""
    nan = float("nan")
    if list(baseline) == list(candidate):  # nothing differs, nothing to test (sacrebleu
        score, _ = corpus_bleu(candidate, references)  # would still answer p = 1/1001)
        return {"bleu": PairedDifference(score, score, 0.0, nan, nan, 1.0)}
    test = PairedTest(
        [("baseline", list(baseline)), ("candidate", list(candidate))],
        {"bleu": BLEU()},
        [list(references)],
        test_type="bs",
        n_samples=BLEU_RESAMPLES,
    )
    _, results = test()
    base, cand = results["BLEU"]
    return {
        "bleu": PairedDifference(
            baseline=base.score,
            candidate=cand.score,
            delta=cand.score - base.score,
            low=nan,
            high=nan,
            p_value=float(cand.p_value),
        )
    }


def sentence_bleu(output: str, reference: str) -> float:
    """One example's BLEU (smoothed, so a short output still gets a meaningful score):
    for the per-example table only; the task's score is corpus BLEU."""
    return BLEU(effective_order=True).sentence_score(output, [reference]).score


# rouge-score gives F1 as a fraction; the paper (and so gpt2lab) prints ROUGE on 0-100.
ROUGE_SCALE = 100.0


def rouge1(output: str, reference: str) -> float:
    """One example's ROUGE-1 F1 (stemmed, 0-100), for the per-example table."""
    return _rouge_pair(output, reference)[0] * ROUGE_SCALE


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_ROUGE = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


@lru_cache(maxsize=65_536)  # a bootstrap resample scores the same pairs again
def _rouge_pair(output: str, reference: str) -> tuple[float, ...]:
    """F1 of each ROUGE type for one summary. rougeLsum reads one sentence per line, so
    both sides get their sentences put on lines first (rouge-score's own splitter needs
    nltk data that is not available offline)."""
    scores = _ROUGE.score("\n".join(sentences(reference)), "\n".join(sentences(output)))
    return tuple(scores[name].fmeasure for name in ROUGE_TYPES)


def corpus_rouge(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, -2, -L and -Lsum over the examples, with Porter stemming, as
    rouge-score computes them but x100 (0-100, as the paper prints them), and `r_avg`, the
    GPT-2 paper's R-AVG: the mean of ROUGE-1, ROUGE-2 and ROUGE-L, where the paper's ROUGE-L
    (ROUGE-1.5.5's) is summary-level, i.e. rouge-score's rougeLsum, not its sentence-level
    rougeL."""
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for output, reference in zip(outputs, references, strict=True):
        for name, value in zip(ROUGE_TYPES, _rouge_pair(output, reference), strict=True):
            totals[name] += value
    count = max(1, len(outputs))
    found = {name: total / count * ROUGE_SCALE for name, total in totals.items()}
    found["r_avg"] = (found["rouge1"] + found["rouge2"] + found["rougeLsum"]) / 3
    return found


def lede_3(article: str) -> str:
    """The paper's Lede-3 baseline: the article's first 3 sentences (after its byline)."""
    return first_sentences(strip_byline(article), 3)


def random_3(article: str, seed: int) -> str:
    """The paper's Random-3 baseline: 3 sentences picked at random from the article (in
    their original order), with a seed per article so it can be repeated."""
    found = sentences(strip_byline(article))
    picked = sorted(random.Random(seed).sample(range(len(found)), min(3, len(found))))
    return " ".join(found[i] for i in picked)
