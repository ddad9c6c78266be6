"""What an evaluation task is: a declaration, not plumbing.

A task says where its rows come from, how a row becomes a prompt, how the model should
continue it (or, for a likelihood task, what the model should read), how to clean the
continuation up, and how to score the lot. The evaluate flow does the rest (batching,
caching, MLflow). See docs/adding-an-eval-task.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from tasks.evals.paper import PaperFigure

Row = Mapping[str, Any]
# Numbers are metrics; text (a BLEU signature) is a note. A Mapping, not a dict, so that
# a score function that returns only numbers (dict[str, float]) fits the type too.
Scores = Mapping[str, float | str]


@dataclass(frozen=True)
class TextLikelihood:
    """What a `perplexity` task measures on one row: how likely the model finds the whole
    prompt, read with a sliding window. Summed, not averaged, so that a task can pool
    rows with every token weighing the same."""

    nll: float  # -log p(text), natural log, summed over the scored tokens
    tokens: int  # tokens scored: all but the first, which has no context to predict it
    bytes: int  # the text's UTF-8 bytes, for bits per byte (comparable across tokenizers)


@dataclass(frozen=True)
class ContinuationLikelihood:
    """What a `loglikelihood` task measures on one row: how likely the model finds the
    target after the context (both from the task's `continuation`)."""

    nll: float  # -log p(target | context), natural log, summed over the target's tokens
    greedy: bool  # whether greedy decoding would have written exactly the target
    # ...and then ended the word there (its next choice starts with a space, punctuation or
    # <|endoftext|>), so the whole word it wrote is the target, not a longer one.
    word_ends: bool


@dataclass(frozen=True)
class ChoiceLikelihoods:
    """What a `choice` task measures on one row: how likely the model finds each candidate
    after the context (both from the task's `choices`), e.g. to rank a gold answer among
    distractors; and, for a task that `also_generate`s, what the model writes there itself.
    Sums, not means, so that a task can rank by either and pool tokens for a perplexity."""

    nll: list[float]  # per candidate: -log p(candidate | context), summed over its tokens
    tokens: list[int]  # per candidate: how many tokens that is
    written: str | None = None  # the model's own continuation (post-processed when scored)


# A task's own intervals or paired test for its metrics, when it has a better one than the
# generic bootstrap (BLEU: sacrebleu's, which resamples sentence statistics, not sentences).
Intervals = Mapping[str, tuple[float, float]]
IntervalFunction = Callable[[list[str], list[str], list[Row]], Intervals]
PairedFunction = Callable[[list[str], list[str], list[str], list[Row]], Mapping[str, Any]]

# `score` receives one output per row. What an output is depends on the task's kind:
# generate -> the post-processed text (str); perplexity -> a TextLikelihood;
# loglikelihood -> a ContinuationLikelihood; choice -> a ChoiceLikelihoods.
Output = TypeVar("Output")
Scorer = Callable[[list[Output], list[str], list[Row]], Scores]  # outputs, references, rows


@dataclass(frozen=True)
class DataSource:
    """Where the rows come from: a local JSON-lines or CSV file (always usable, offline),
    and optionally the Hugging Face dataset it samples, used instead when asked for and
    online."""

    local: Path
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "test"
    few_shot_local: Path | None = None  # the pool few-shot examples are drawn from
    few_shot_hub_split: str | None = None
    # The hub's rows, reshaped into the task's fields (e.g. WMT's {"translation": {...}}
    # into {"en": ..., "fr": ...}, or WikiText's lines joined into one text).
    hub_rows: Callable[[list[Row]], list[Row]] | None = None


@dataclass(frozen=True)
class Generation:
    """How the model continues a prompt: greedy (top_k=1) or top-k sampling."""

    max_new_tokens: int = 64
    top_k: int = 1
    temperature: float = 1.0
    stop: tuple[str, ...] = ()  # cut the output at the first of these
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.top_k == 1


def identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class EvalTask:
    """One evaluation task. Declare it as `TASK = EvalTask(...)` (or `TASKS = [...]`) in a
    file of `tasks/evals/builtin/` or of a GPT2LAB_EVAL_TASKS folder; it is found by name
    from then on."""

    name: str
    version: int  # bump it when prompts, data or scoring change: cached outputs then miss
    description: str
    data: DataSource
    fields: tuple[str, ...]  # every row must have these, as text
    prompt: Callable[[Row, Sequence[Row]], str]  # (row, few-shot examples) -> prompt
    reference: Callable[[Row], str]
    score: (
        Scorer[str]
        | Scorer[TextLikelihood]
        | Scorer[ContinuationLikelihood]
        | Scorer[ChoiceLikelihoods]
    )
    # generate: the model continues `prompt(row)`; its post-processed text is scored.
    # perplexity: the model reads `prompt(row)` whole, with a sliding window of its
    #   context, `stride` tokens apart; each row's output is a TextLikelihood.
    # loglikelihood: `continuation(row)` = (context, target); each row's output is a
    #   ContinuationLikelihood.
    # choice: `choices(row)` = (context, candidates); each row's output is a
    #   ChoiceLikelihoods (every candidate's likelihood after the context, and, with
    #   `also_generate`, the model's own continuation of the context with `generation`).
    kind: Literal["generate", "loglikelihood", "perplexity", "choice"] = "generate"
    continuation: Callable[[Row], tuple[str, str]] | None = None
    choices: Callable[[Row], tuple[str, list[str]]] | None = None
    also_generate: bool = False
    # Fields every row must have as lists of text (e.g. a dialogue's turns).
    list_fields: tuple[str, ...] = ()
    # perplexity: tokens predicted per window (default: the model's whole context, disjoint
    # windows, as lm-evaluation-harness reads them; smaller gives each token more context).
    stride: int | None = None
    # perplexity: read each text as following <|endoftext|>, so its first token is scored
    # too (as the harness does); False skips the first token, which has no context.
    score_first_token: bool = True
    few_shot: int = 0
    few_shot_seed: int = 1234
    generation: Generation = Generation()
    postprocess: Callable[[str], str] = identity  # generate: the answer in the text
    # generate: a prompt longer than the context (less the tokens to write) loses its start
    # (cut="start": right when the question is at the end) or its end (cut="end": right
    # for an article, whose opening matters most); `hint`, the text that ends the prompt,
    # is kept either way.
    cut: Literal["start", "end"] = "start"
    hint: str = ""
    # One example's score, for the per-example table (e.g. sentence BLEU): (output, ref).
    example_score: Callable[[str, str], float] | None = None
    # The GPT-2 paper's figures for a metric, per model size (tasks/evals/paper.py).
    paper: Mapping[str, PaperFigure] = field(default_factory=dict)
    # Uncertainty (tasks/evals/uncertainty.py): every score gets a 95% interval from
    # `bootstrap_resamples` resamples of the rows, re-scored with `score`, unless the task
    # gives its own: `intervals(outputs, references, rows)`. `paired(baseline outputs,
    # candidate outputs, references, rows)` likewise replaces the generic paired bootstrap.
    bootstrap_resamples: int = 1000
    intervals: IntervalFunction | None = None
    paired: PairedFunction | None = None

    def __post_init__(self) -> None:
        # Checked here, so that a bad override (dataclasses.replace) fails at once too.
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(
                f"task {self.name}: stride must be a positive number of tokens or None, "
                f"got {self.stride!r}"
            )
        if self.cut not in ("start", "end"):
            raise ValueError(f"task {self.name}: cut must be 'start' or 'end', got {self.cut!r}")
        if self.kind == "choice" and self.choices is None:
            raise ValueError(f"task {self.name}: a choice task needs choices(row)")

    def reading_settings(self) -> dict[str, Any]:
        """Settings besides `generation` that change the model's output for the same
        prompt, so they belong in the output cache's key: a perplexity task's windows.
        `dataclasses.replace(task, stride=512)` is then another key, never a stale hit."""
        if self.kind == "perplexity":
            return {"stride": self.stride, "score_first_token": self.score_first_token}
        if self.kind == "choice":
            return {"also_generate": self.also_generate}
        return {}

    def few_shot_examples(self, pool: Sequence[Row], row_index: int) -> list[Row]:
        """`few_shot` examples from `pool` (the task's few-shot data, kept apart from the
        rows it scores), the same in every run: the seed depends only on the task and
        the row's position."""
        if not self.few_shot:
            return []
        rng = random.Random(self.few_shot_seed * 1_000_003 + row_index)
        return [pool[i] for i in rng.sample(range(len(pool)), min(self.few_shot, len(pool)))]
