"""PERSONA-CHAT: reply in character, given a persona and the conversation so far
(Zhang et al. 2018; the ConvAI2 challenge's metrics, Dinan et al. 2019).

Each row is one reply of the persona's owner: `personality` (a few sentences), `history`
(the turns before it, the other person's last) and `candidates` (distractor replies from
other dialogues, the one actually written **last**), as the hub's
`bavard/personachat_truecased` lays them out (its `validation` split, about 7,800 rows).
Offline, a small sample written for gpt2lab: 40 dialogues of 3 replies, 8 candidates
each; its persona facts and replies also appear, in other dialogues, in the training split
beside it (`personachat.train.jsonl`, whole dialogues for `gpt2lab finetune --format
persona-chat`), so a model fine-tuned on that split is asked to combine what it learnt in
new ways, not to know new facts. Figures on the sample say whether a model follows the
persona format; they are not comparable with ConvAI2's.

The model reads the text `tasks/dialogue/format.py` builds (persona, then "Them:"/"You:"
turns, ending with "You:"), the layout `--format persona-chat` fine-tunes on. Metrics:
- `hits_at_1`: the share of rows where the written reply is the likeliest candidate,
  likelihood = p(" " + candidate + "\\n" | context), summed over its tokens (a strict
  win: a tie with a distractor counts as a miss);
- `perplexity`: exp of the mean -log p per token of the written reply (and its ending
  newline), pooled over rows, as ConvAI2's perplexity is per token;
- `f1`: ConvAI2's word F1 of the model's own greedy reply (up to 32 tokens, its first
  line) against the written one: both lower-cased, punctuation and the articles a/an/the
  removed, split on whitespace; F1 of the multiset overlap of words (ParlAI's
  `normalize_answer` and `F1Metric`), averaged over rows, on 0-100 as ConvAI2 prints it
  (gpt2lab's one scale for text overlap, see tasks/evals/metrics.py; Hits@1, a share of
  rows, is a fraction 0-1).
ConvAI2's own Hits@1 ranks with a model trained to (a multiple-choice head); here the
language model's likelihood ranks, which any GPT-2 can do without such a head.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from tasks.dialogue.format import build_prompt, cut_reply, reply_text
from tasks.evals.task import ChoiceLikelihoods, DataSource, EvalTask, Generation, Row

LOCAL = Path(__file__).with_name("local_data")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\]\\^`{|}~_']")


def normalized_words(text: str) -> list[str]:
    """ConvAI2's normalisation: lower case, punctuation then articles turned to spaces."""
    text = _PUNCTUATION.sub(" ", text.lower())
    return _ARTICLES.sub(" ", text).split()


# Text overlap is reported on 0-100 (ConvAI2 prints F1 as a percentage, as the GPT-2 paper
# prints BLEU and ROUGE); `word_f1` itself stays ParlAI's 0-1 F1, so it reads as theirs.
F1_SCALE = 100.0


def word_f1(prediction: str, reference: str) -> float:
    """F1 (0-1, as ParlAI computes it) of the words the two texts share (counted with
    repeats), after normalisation."""
    predicted, wanted = normalized_words(prediction), normalized_words(reference)
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def context(row: Row) -> str:
    return build_prompt(row["personality"], row["history"])


def choices(row: Row) -> tuple[str, list[str]]:
    """The context and every candidate as it would follow it (the gold one last)."""
    return context(row), [reply_text(candidate) for candidate in row["candidates"]]


def is_hit(measured: ChoiceLikelihoods) -> bool:
    """Whether the last candidate (the gold reply) is strictly the likeliest."""
    *distractors, gold = measured.nll
    return all(gold < other for other in distractors)


def score(
    measured: list[ChoiceLikelihoods], references: list[str], rows: list[Row]
) -> dict[str, float]:
    if not measured:
        return {"hits_at_1": math.nan, "perplexity": math.nan, "f1": math.nan}
    gold_nll = sum(m.nll[-1] for m in measured)
    gold_tokens = sum(m.tokens[-1] for m in measured)
    pairs = zip(measured, references, strict=True)
    f1 = [word_f1(m.written or "", reference) for m, reference in pairs]
    return {
        "hits_at_1": sum(map(is_hit, measured)) / len(measured),
        "perplexity": math.exp(gold_nll / gold_tokens) if gold_tokens else math.nan,
        "f1": F1_SCALE * sum(f1) / len(f1),
    }


TASK = EvalTask(
    name="personachat",
    version=1,
    description="PERSONA-CHAT: the next reply given persona + history; Hits@1 among "
    "distractors by likelihood, perplexity of the reply, word F1 of a greedy reply",
    data=DataSource(
        local=LOCAL / "personachat.sample.jsonl",
        hub_id="bavard/personachat_truecased",
        hub_config="full",
        hub_split="validation",
    ),
    fields=(),
    list_fields=("personality", "history", "candidates"),
    kind="choice",
    prompt=lambda row, examples: context(row),
    choices=choices,
    reference=lambda row: row["candidates"][-1],
    score=score,
    also_generate=True,
    generation=Generation(max_new_tokens=32, top_k=1, stop=("\n",)),
    postprocess=cut_reply,
)
