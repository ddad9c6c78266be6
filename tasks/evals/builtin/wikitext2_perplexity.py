"""WikiText-2 perplexity, measured the way the GPT-2 paper and lm-evaluation-harness do.

WikiText ships pre-tokenised text ("the town 's market", "1 @,@ 000", "= = History = ="),
which GPT-2 never saw in training. The paper "uses invertible de-tokenizers to remove as
many of these tokenization / pre-processing artifacts as possible" and reports perplexity
per *original WikiText token* (word), not per BPE token. So each document (the hub's
`EleutherAI/wikitext_document_level`, `wikitext-2-raw-v1`, test split: one row per article)
is detokenised, read by the model with a sliding window, and its total -log p is divided:
- by the words of the original document: `word_perplexity`, the figure the paper's
  Table 3 reports (29.41 for 117M ... 18.34 for 1542M);
- by its BPE tokens: `token_perplexity` (what most training logs show; not comparable
  across tokenizers);
- by the original document's UTF-8 bytes: `bits_per_byte` and `byte_perplexity`.
Words and bytes are counted as lm-evaluation-harness's `wikitext` task counts them, so its
`word_perplexity` and ours agree (tests/tasks/evals/test_against_harness.py).

The window: by default the model's whole context, disjoint windows, the text read as if it
followed <|endoftext|> (the harness's `loglikelihood_rolling`). A smaller stride
(`gpt2lab evaluate --stride 512` on a 1024-token model) gives every token more context and
a lower perplexity, by about 15% on GPT-2: compare figures only at the same stride.

Offline, the data is three short articles written for gpt2lab in WikiText's raw format (not
WikiText): the figures are only comparable between models, never with the paper's.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.evals.likelihood import bits_per_byte, perplexity
from tasks.evals.paper import table_3
from tasks.evals.task import DataSource, EvalTask, Row, TextLikelihood

# The standard WikiText detokeniser, rule by rule (the same rules as lm-evaluation-harness's
# `wikitext_detokenizer`, applied in the same order, so the two read identical text).
_PLAIN_RULES = (
    # numbers: "1 @,@ 000" -> "1,000", "3 @.@ 5" -> "3.5", "semi @-@ final" -> "semi-final"
    (" @-@ ", "-"),
    (" @,@ ", ","),
    (" @.@ ", "."),
    # punctuation keeps to the word before it
    (" : ", ": "),
    (" ; ", "; "),
    (" . ", ". "),
    (" ! ", "! "),
    (" ? ", "? "),
    (" , ", ", "),
)
_BRACKET_RULES = (  # "( a b )" -> "(a b)", and the same for [ ], { }, " " and ' '
    (re.compile(r"\(\s*([^\)]*?)\s*\)"), r"(\1)"),
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r"{\s*([^}]*?)\s*}"), r"{\1}"),
    (re.compile(r"\"\s*([^\"]*?)\s*\""), r'"\1"'),
    (re.compile(r"'\s*([^']*?)\s*'"), r"'\1'"),
)
_HEADING_AND_SPACING_RULES = (
    ("= = = =", "===="),  # headings: "= = History = =" -> "== History =="
    ("= = =", "==="),
    ("= =", "=="),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (" \n", "\n"),
    ("\n ", "\n"),
    (" N ", " 1 "),  # WikiText's placeholder for a number
    (" 's", "'s"),
)


def detokenize(text: str) -> str:
    """WikiText's raw text as ordinary prose (see the rules above)."""
    text = text.replace("s '", "s'")  # possessive plural: "players ' union"
    # A quirk of the reference rules: this matches only the literal text "/' 5/"; kept so
    # that the two detokenisers agree exactly.
    text = re.sub(r"/' [0-9]/", r"/'[0-9]/", text)
    for old, new in _PLAIN_RULES:
        text = text.replace(old, new)
    for pattern, replacement in _BRACKET_RULES:
        text = pattern.sub(replacement, text)
    for old, new in _HEADING_AND_SPACING_RULES:
        text = text.replace(old, new)
    return text


def words(page: str) -> int:
    """Words of the original (tokenised) document, as the harness counts them."""
    return len(re.split(r"\s+", page))


def score(
    measured: list[TextLikelihood], references: list[str], rows: list[Row]
) -> dict[str, float]:
    """One figure over all documents together: every word (token, byte) weighs the same."""
    nll = sum(m.nll for m in measured)
    tokens = sum(m.tokens for m in measured)
    word_count = sum(words(row["page"]) for row in rows)
    utf8_bytes = sum(len(row["page"].encode("utf-8")) for row in rows)
    return {
        "word_perplexity": perplexity(nll, word_count),
        "token_perplexity": perplexity(nll, tokens),
        "byte_perplexity": perplexity(nll, utf8_bytes),
        "bits_per_byte": bits_per_byte(nll, utf8_bytes),
    }


TASK = EvalTask(
    name="wikitext2-perplexity",
    version=2,
    description="WikiText-2 test articles, detokenised: perplexity per original word (the "
    "paper's), per BPE token and bits per byte (offline: WikiText-style sample, not WikiText)",
    data=DataSource(
        local=Path(__file__).with_name("local_data") / "wikitext2-style.sample.jsonl",
        hub_id="EleutherAI/wikitext_document_level",
        hub_config="wikitext-2-raw-v1",
    ),
    fields=("page",),
    kind="perplexity",
    prompt=lambda row, examples: detokenize(row["page"]),
    reference=lambda row: "",
    score=score,
    paper={
        "word_perplexity": table_3(
            "WikiText2 (PPL)",
            note="per original WikiText token after detokenisation; the paper does not give "
            "its window stride",
        )
    },
)
