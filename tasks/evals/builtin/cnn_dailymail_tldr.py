"""CNN/Daily Mail summarisation with the `TL;DR:` hint, as in the GPT-2 paper (section 3.6).

The article, then `\\nTL;DR:`; 100 tokens of top-k sampling with k=2; the first 3
sentences written are the summary. Scored with ROUGE-1/2/L (and L-sum) F1 from
rouge-score with stemming. The paper's baselines are computed on the same articles:
Lede-3 (the first 3 sentences) and Random-3 (3 random sentences); a second task drops
the hint, to show how much the two words `TL;DR:` do.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from tasks.evals.metrics import corpus_rouge, first_sentences, lede_3, random_3, rouge1
from tasks.evals.task import DataSource, EvalTask, Generation, Row

LOCAL = Path(__file__).with_name("local_data")
HINT = "\nTL;DR:"


def with_hint(row: Row, examples: list[Row]) -> str:
    return row["article"] + HINT


def without_hint(row: Row, examples: list[Row]) -> str:
    return row["article"]


def summary(text: str) -> str:
    return first_sentences(text, 3)


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


# The GPT-2 paper's TL;DR figures and its Random-3 and Lede-3 baselines (table 4),
# as F1 in [0, 1].
PAPER = {
    # GPT-2, article + TL;DR:
    "rouge1": 0.2934,
    "rouge2": 0.0827,
    "rougeL": 0.2658,
    # Random-3: three random sentences of the article
    "random3/rouge1": 0.2878,
    "random3/rouge2": 0.0863,
    "random3/rougeL": 0.2552,
    # Lede-3: its first three sentences
    "lede3/rouge1": 0.4038,
    "lede3/rouge2": 0.1766,
    "lede3/rougeL": 0.3662,
}


def _task(name: str, prompt, description: str) -> EvalTask:
    return EvalTask(
        name=name,
        version=1,
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
        paper=PAPER if prompt is with_hint else {},
    )


TASKS = [
    _task(
        "cnn-dailymail-tldr",
        with_hint,
        "CNN/Daily Mail: article + TL;DR:, top-k 2, first 3 sentences, ROUGE",
    ),
    _task(
        "cnn-dailymail-no-hint",
        without_hint,
        "CNN/Daily Mail without the TL;DR: hint (the paper's ablation)",
    ),
]
