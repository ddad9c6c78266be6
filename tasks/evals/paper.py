"""The GPT-2 paper's own figures, per model size, to print beside gpt2lab's scores.

Radford et al. (2019), "Language Models are Unsupervised Multitask Learners":
- Table 3: zero-shot language modelling for all four sizes (117M, 345M, 762M, 1542M).
- Table 4: CNN/Daily Mail summarisation, the 1542M model only, with two baselines.
- Section 3.7: WMT-14 translation, the 1542M model only.

The paper's size labels (117M ... 1542M) undercount the released checkpoints a little; the
`parameters` below are the checkpoints' own counts (tied input/output embedding counted
once), which is what `GPT.num_parameters()` reports for a converted checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PaperSize:
    name: str  # the paper's label: "117M", "345M", "762M", "1542M"
    parameters: int  # parameters of the released checkpoint


SIZES: tuple[PaperSize, ...] = (
    PaperSize("117M", 124_439_808),
    PaperSize("345M", 354_823_168),
    PaperSize("762M", 774_030_080),
    PaperSize("1542M", 1_557_611_200),
)


@dataclass(frozen=True)
class PaperFigure:
    """One figure of the paper: its value for each size it reports, and where it is."""

    by_size: Mapping[str, float]  # size label -> value, in gpt2lab's units for the metric
    source: str  # where in the paper, e.g. "Table 3, LAMBADA (ACC)"
    note: str = ""  # how the paper measured it differently, when it did


def size_for(parameters: int) -> PaperSize:
    """The paper size nearest to `parameters` on a log scale (a model smaller than the
    smallest is compared with the smallest)."""
    return min(
        SIZES, key=lambda size: abs(math.log(size.parameters) - math.log(max(1, parameters)))
    )


# Table 3, row by row: the paper's columns, each as {size: value}. Accuracies are given
# here as fractions (the paper prints percent); perplexities, bits per byte (BPB) and bits
# per character (BPC) as printed. Sets gpt2lab has no task for are here too, so a user
# adding one finds the figures.
TABLE_3_COLUMNS = (
    "LAMBADA (PPL)",
    "LAMBADA (ACC)",
    "CBT-CN (ACC)",
    "CBT-NE (ACC)",
    "WikiText2 (PPL)",
    "PTB (PPL)",
    "enwik8 (BPB)",
    "text8 (BPC)",
    "WikiText103 (PPL)",
    "1BW (PPL)",
)
_TABLE_3_ROWS = {
    "117M": (35.13, 45.99, 87.65, 83.4, 29.41, 65.85, 1.16, 1.17, 37.50, 75.20),
    "345M": (15.60, 55.48, 92.35, 87.1, 22.76, 47.33, 1.01, 1.06, 26.37, 55.72),
    "762M": (10.87, 60.12, 93.45, 88.0, 19.93, 40.31, 0.97, 1.02, 22.05, 44.575),
    "1542M": (8.63, 63.24, 93.30, 89.05, 18.34, 35.76, 0.93, 0.98, 17.48, 42.16),
}
_PERCENT = {"LAMBADA (ACC)", "CBT-CN (ACC)", "CBT-NE (ACC)"}

TABLE_3: dict[str, dict[str, float]] = {
    column: {
        size: round(values[i] / 100, 6) if column in _PERCENT else values[i]
        for size, values in _TABLE_3_ROWS.items()
    }
    for i, column in enumerate(TABLE_3_COLUMNS)
}


def table_3(column: str, note: str = "") -> PaperFigure:
    """A Table 3 column as a figure for every size."""
    if column not in TABLE_3:
        raise KeyError(f"Table 3 has no column {column!r}; it has {', '.join(TABLE_3)}")
    return PaperFigure(TABLE_3[column], f"Table 3, {column}", note)


# Table 4: ROUGE F1 on CNN/Daily Mail, as the paper prints it (0-100: gpt2lab's ROUGE is on
# the same scale, see tasks/evals/metrics.py). R-L is ROUGE-1.5.5's summary-level ROUGE-L,
# which rouge-score calls rougeLsum. R-AVG is the mean of and R-L.
TABLE_4: dict[str, dict[str, float]] = {
    "GPT-2 TL;DR": {"R-1": 29.34, "R-2": 8.27, "R-L": 26.58, "R-AVG": 21.40},
    "Random-3": {"R-1": 28.78, "R-2": 8.63, "R-L": 25.52, "R-AVG": 20.98},
    "Lede-3": {"R-1": 40.38, "R-2": 17.66, "R-L": 36.62, "R-AVG": 31.55},
    "GPT-2 no hint": {"R-1": 21.58, "R-2": 4.03, "R-L": 19.47, "R-AVG": 15.03},
}
LARGEST = SIZES[-1].name


def table_4(row: str, column: str, note: str = "") -> PaperFigure:
    """A Table 4 figure: the 1542M model's (the baselines' rows sit in the same table,
    so they are filed under that size too)."""
    return PaperFigure({LARGEST: TABLE_4[row][column]}, f"Table 4, {row}, {column}", note)


# Section 3.7: "GPT-2 gets 5 BLEU" on WMT-14 English-French and "11.5 BLEU" on
# French-English, the 1542M model.
WMT14_BLEU = {"en-fr": 5.0, "fr-en": 11.5}


def wmt14(direction: str, note: str = "") -> PaperFigure:
    return PaperFigure({LARGEST: WMT14_BLEU[direction]}, "Section 3.7, WMT-14 " + direction, note)
