"""Perplexity and bits per byte on held-out text, read with a sliding window.

The GPT-2 paper reports WikiText-2 perplexity (29.41 for its smallest model). Online,
the data is `wikitext` `wikitext-2-raw-v1` `test`; offline, a few paragraphs that ship
with gpt2lab (not WikiText, so not comparable with the paper's figure, only between
models).
"""

from __future__ import annotations

from pathlib import Path

from tasks.evals.likelihood import bits_per_byte, perplexity
from tasks.evals.task import DataSource, EvalTask, Row, TextLikelihood


def score(
    measured: list[TextLikelihood], references: list[str], rows: list[Row]
) -> dict[str, float]:
    """One perplexity over all rows together: every token weighs the same."""
    nll = sum(m.nll for m in measured)
    tokens = sum(m.tokens for m in measured)
    utf8_bytes = sum(m.bytes for m in measured)
    return {"perplexity": perplexity(nll, tokens), "bits_per_byte": bits_per_byte(nll, utf8_bytes)}


TASK = EvalTask(
    name="wikitext2-perplexity",
    version=1,
    description="Perplexity and bits per byte, sliding window with a stride of half the "
    "context (offline: a shipped sample, not WikiText)",
    data=DataSource(
        local=Path(__file__).with_name("local_data") / "heldout-text.sample.jsonl",
        hub_id="wikitext",
        hub_config="wikitext-2-raw-v1",
        # The test split comes as lines: one text, read with the sliding window.
        hub_rows=lambda rows: [{"text": "".join(row["text"] for row in rows)}],
    ),
    fields=("text",),
    kind="perplexity",
    prompt=lambda row, examples: row["text"],
    reference=lambda row: "",
    score=score,
    paper={"perplexity": 29.41},
)
