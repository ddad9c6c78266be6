"""CNN/Daily Mail summarisation with the `TL;DR:` hint, as in the GPT-2 paper (section 3.6).

The article, then `\\nTL;DR:`; 100 tokens of top-k sampling with k=2; the first 3
sentences written are the summary. An article too long for the context loses its end, not
its opening, and keeps the hint. Sentences are split with pysbd (which knows "Mr." and
"U.S."), after removing Daily Mail bylines ("By . Name . PUBLISHED: . ...").

Scored with rouge-score's F1 (Porter stemming): rouge1, rouge2, rougeL (sentence-level
LCS), rougeLsum (summary-level LCS: what ROUGE-1.5.5, and so the paper's Table 4, calls
ROUGE-L) and r_avg (the paper's R-AVG: the mean of R-1, R-2 and R-L = rougeLsum). The
paper's baselines run on the same articles under `lede3/` (the first 3 sentences) and
`random3/` (3 random sentences); a second task drops the hint, as the paper's ablation.

Table 4 is the 1542M model only: a smaller model is shown beside it, marked so. The paper
evaluated on the full test set with the original ROUGE-1.5.5 Perl script; rouge-score
reimplements it (small differences in tokenisation and stemming remain).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from tasks.evals.metrics import (
    corpus_rouge,
    first_sentences,
    lede_3,
    random_3,
    rouge1,
    strip_byline,
)
from tasks.evals.paper import PaperFigure, table_4
from tasks.evals.task import DataSource, EvalTask, Generation, Row

LOCAL = Path(__file__).with_name("local_data")
HINT = "\nTL;DR:"


def with_hint(row: Row, examples: list[Row]) -> str:
    return row["article"] + HINT


def without_hint(row: Row, examples: list[Row]) -> str:
    return row["article"]


def summary(text: str) -> str:
    return first_sentences(strip_byline(text), 3)


def rouge_with_baselines(
    outputs: list[str], references: list[str], rows: list[Row]
) -> dict[str, float]:
    """ROUGE F1 of the model's summaries, and of Lede-3 and Random-3 on the same articles
    (Random-3 seeded by each article's text, so it repeats exactly)."""
    scores = corpus_rouge(outputs, references)
    articles = [row["article"] for row in rows]
    lede = corpus_rouge([lede_3(a) for a in articles], references)
    rand = corpus_rouge([random_3(a, zlib.crc32(a.encode())) for a in articles], references)
    scores.update({f"lede3/{name}": value for name, value in lede.items()})
    scores.update({f"random3/{name}": value for name, value in rand.items()})
    return scores


# The GPT-2 paper's Table 4 (1542M model; the baselines are in the same table), by our
# metric names, R-L (= rougeLsum) and R-AVG.
_COLUMNS = {"rouge1": "R-1", "rouge2": "R-2", "rougeLsum": "R-L", "r_avg": "R-AVG"}
_BASELINE_NOTE = "a baseline, not a model: the same for every model size"


def _paper(row: str, prefix: str = "", note: str = "") -> dict[str, PaperFigure]:
    return {f"{prefix}{ours}": table_4(row, theirs, note) for ours, theirs in _COLUMNS.items()}


PAPER_WITH_HINT = {
    **_paper("GPT-2 TL;DR"),
    **_paper("Lede-3", "lede3/", _BASELINE_NOTE),
    **_paper("Random-3", "random3/", _BASELINE_NOTE),
}
PAPER_WITHOUT_HINT = _paper("GPT-2 no hint")


def _task(name: str, prompt, description: str, paper: dict[str, PaperFigure]) -> EvalTask:
    return EvalTask(
        name=name,
        version=2,
        description=description,
        data=DataSource(
            local=LOCAL / "cnn_dailymail.sample.jsonl", hub_id="cnn_dailymail", hub_config="3.0.0"
        ),
        fields=("article", "highlights"),
        prompt=prompt,
        reference=lambda row: row["highlights"],
        score=rouge_with_baselines,
        generation=Generation(max_new_tokens=100, top_k=2, temperature=1.0, seed=0),
        postprocess=summary,
        example_score=rouge1,
        paper=paper,
        cut="end",  # an article too long loses its end, not its opening...
        hint=HINT if prompt is with_hint else "",  # ...and keeps the hint
    )


TASKS = [
    _task(
        "cnn-dailymail-tldr",
        with_hint,
        "CNN/Daily Mail: article + TL;DR:, top-k 2, first 3 sentences, ROUGE",
        PAPER_WITH_HINT,
    ),
    _task(
        "cnn-dailymail-no-hint",
        without_hint,
        "CNN/Daily Mail without the TL;DR: hint (the paper's ablation)",
        PAPER_WITHOUT_HINT,
    ),
]
