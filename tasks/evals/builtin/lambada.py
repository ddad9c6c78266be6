"""LAMBADA: the last word of a passage, easy to guess with the whole passage in view and
hard from its last sentence alone (Paperno et al. 2016; the GPT-2 paper, section 3.3).

The data is the OpenAI-processed test set the GPT-2 paper used (`EleutherAI/lambada_openai`,
5,153 passages), not the original `lambada` release, whose text is formatted differently.
Offline, a few passages written for gpt2lab (figures comparable between models only).

The metrics are lm-evaluation-harness's `lambada_openai` ones, computed on the same split
of each passage (context: every word but the last, joined by spaces; target: " " + the last
word), so the two agree (tests/tasks/evals/test_against_harness.py):
- `accuracy`: the share of passages whose target greedy decoding writes exactly (every
  target token the most likely one);
- `perplexity`: exp of the mean -log p(target | context) over passages (per passage,
  i.e. per last word, not per token).
And one of gpt2lab's, named apart:
- `accuracy_whole_word`: as `accuracy`, and the model then ends the word (its next choice
  is a space, punctuation or <|endoftext|>), so writing "pianos" for "piano" is wrong.

The paper's own accuracy (Table 3: 45.99% for 117M ... 63.24% for 1542M) judged the word
the model predicted, after a stop-word filter whose word list it does not give, so no
definition reproduces it exactly; it is shown beside `accuracy` with that note. Its
perplexity (35.13 ... 8.63) is the per-passage one, like-for-like.
"""

from __future__ import annotations

import math
from pathlib import Path

from tasks.evals.paper import table_3
from tasks.evals.task import ContinuationLikelihood, DataSource, EvalTask, Row


def last_word(row: Row) -> tuple[str, str]:
    """(the passage up to its last word, " " + the last word), split on single spaces as
    lm-evaluation-harness splits it."""
    words = row["text"].split(" ")
    return " ".join(words[:-1]), " " + words[-1]


def score(
    measured: list[ContinuationLikelihood], references: list[str], rows: list[Row]
) -> dict[str, float]:
    count = len(measured)
    if not count:
        return {"accuracy": math.nan, "accuracy_whole_word": math.nan, "perplexity": math.nan}
    return {
        "accuracy": sum(m.greedy for m in measured) / count,
        "accuracy_whole_word": sum(m.greedy and m.word_ends for m in measured) / count,
        "perplexity": math.exp(sum(m.nll for m in measured) / count),
    }


TASK = EvalTask(
    name="lambada",
    version=2,
    description="LAMBADA (OpenAI's test set): the passage's last word; accuracy and "
    "perplexity as lm-evaluation-harness defines them",
    data=DataSource(
        local=Path(__file__).with_name("local_data") / "lambada.sample.jsonl",
        hub_id="EleutherAI/lambada_openai",
        hub_config="default",
    ),
    fields=("text",),
    kind="loglikelihood",
    prompt=lambda row, examples: last_word(row)[0],
    continuation=last_word,
    reference=lambda row: last_word(row)[1],
    score=score,
    paper={
        "accuracy": table_3(
            "LAMBADA (ACC)",
            note="the paper judged the predicted word after a stop-word filter it does not "
            "list; here every target token must be the greedy choice (the harness's rule)",
        ),
        "perplexity": table_3("LAMBADA (PPL)"),
    },
)
