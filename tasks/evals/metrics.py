"""Scores as the GPT-2 paper reports them: sacrebleu's BLEU, rouge-score's ROUGE, and the
paper's two summarisation baselines (Random-3, Lede-3)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from tasks.evals.uncertainty import PairedDifference

# A sentence ends at ., ! or ? (closing quotes and brackets included) before whitespace.
# Simple on purpose: it is the same rule for the model's output, the references and the
# baselines, and it needs no downloaded model (nltk's punkt is not available offline).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")


def sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones left out."""
    return [part.strip() for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def first_sentences(text: str, n: int) -> str:
    return " ".join(sentences(text)[:n])


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
    """Corpus BLEU's 95% interval by sacrebleu's own bootstrap (`--confidence`): it
    resamples per-sentence n-gram statistics, so 1,000 resamples cost about one score. Its
    seed is fixed (SACREBLEU_SEED, 12345 by default): the same interval every run."""
    score = BLEU().corpus_score(list(outputs), [list(references)], n_bootstrap=BLEU_RESAMPLES)
    # sacrebleu reports the resamples' mean and the half-width of their middle 95%.
    return {"bleu": (score._mean - score._ci, score._mean + score._ci)}


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


def rouge1(output: str, reference: str) -> float:
    """One example's ROUGE-1 F1 (stemmed), for the per-example table."""
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    return scorer.score(reference, output)["rouge1"].fmeasure


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def corpus_rouge(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, -2, -L and -Lsum over the examples, with Porter stemming, as
    rouge-score computes them. rougeLsum reads one sentence per line, so both sides get
    their sentences put on lines first."""
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for output, reference in zip(outputs, references, strict=True):
        scores = scorer.score("\n".join(sentences(reference)), "\n".join(sentences(output)))
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    count = max(1, len(outputs))
    return {name: total / count for name, total in totals.items()}


def lede_3(article: str) -> str:
    """The paper's Lede-3 baseline: the article's first 3 sentences."""
    return first_sentences(article, 3)


def random_3(article: str, seed: int) -> str:
    """The paper's Random-3 baseline: 3 sentences picked at random from the article (in
    their original order), with a seed per article so it can be repeated."""
    found = sentences(article)
    picked = sorted(random.Random(seed).sample(range(len(found)), min(3, len(found))))
    return " ".join(found[i] for i in picked)
