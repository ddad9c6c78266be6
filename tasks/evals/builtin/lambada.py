"""LAMBADA-style last-word prediction: passages whose final word is easy to guess with the
whole passage in view and hard from its last sentence alone.

A passage counts as right when greedy decoding would write its last word exactly (every
token of it the most likely one); perplexity is that of the last words. The GPT-2 paper,
smallest model: accuracy 45.99%, perplexity 35.13. Online, the data is `lambada` `test`;
offline, a few passages that ship with gpt2lab.
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.evals.task import ContinuationLikelihood, DataSource, EvalTask, Row


def last_word(row: Row) -> tuple[str, str]:
    """(the passage up to its last word, " " + the last word)."""
    context, word = row["text"].rstrip().rsplit(" ", 1)
    return context, " " + word


def score(
    measured: list[ContinuationLikelihood], references: list[str], rows: list[Row]
) -> dict[str, float]:
    """Accuracy: the share of last words greedy decoding writes exactly. Perplexity: of
    the last words, per word (the mean -log p over passages), not per token."""
    count = max(1, len(measured))
    return {
        "accuracy": sum(m.greedy for m in measured) / count,
        "perplexity": math.exp(sum(m.nll for m in measured) / count),
    }


TASK = EvalTask(
    name="lambada",
    version=1,
    description="Last word of a passage: greedy exact match (accuracy) and its perplexity",
    data=DataSource(
        local=Path(__file__).with_name("local_data") / "lambada.sample.jsonl", hub_id="lambada"
    ),
    fields=("text",),
    kind="loglikelihood",
    prompt=lambda row, examples: last_word(row)[0],
    continuation=last_word,
    reference=lambda row: last_word(row)[1],
    score=score,
    paper={"accuracy": 0.4599, "perplexity": 35.13},
)
