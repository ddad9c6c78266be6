"""Which of the GPT-2 paper's figures to print beside a score, and how comparable it is.

The paper reports most language-modelling figures for each of its four model sizes, but
translation and summarisation for its largest model only. A model is compared with the
size closest to its own parameter count (a tiny teaching model with the smallest size);
when the paper has no figure for that size, the figure it does have is shown and marked,
so nobody reads a 1542M model's BLEU as the bar for a 124M one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tasks.evals.paper import SIZES, PaperFigure, size_for


@dataclass(frozen=True)
class BesidePaper:
    """The paper's figure for one metric, as the results table shows it."""

    model_size: str  # the paper size this model is compared with
    paper_size: str  # the size the shown figure is for
    value: float
    same_size: bool  # False: the paper has this figure only for other sizes
    source: str  # where in the paper
    note: str  # how the paper's measure differs, or why the sizes differ

    @property
    def label(self) -> str:
        """ "29.41 (117M)", or "5 (1542M only)" when the size is not the model's."""
        shown = f"{self.value:.4g}"
        return (
            f"{shown} ({self.paper_size})"
            if self.same_size
            else f"{shown} ({self.paper_size} only)"
        )


def beside_paper(paper: Mapping[str, PaperFigure], parameters: int) -> dict[str, BesidePaper]:
    """For each metric the paper has a figure for, the one to show beside a model with
    `parameters` parameters."""
    size = size_for(parameters).name
    found = {}
    for metric, figure in paper.items():
        if not figure.by_size:
            continue
        same = size in figure.by_size
        # Not reported for this size: show the nearest size the paper does report.
        shown = size if same else _nearest_reported(size, figure)
        note = figure.note
        if not same:
            gap = f"the paper reports this only for {', '.join(figure.by_size)}"
            note = f"{gap}; {note}" if note else gap
        found[metric] = BesidePaper(
            model_size=size,
            paper_size=shown,
            value=figure.by_size[shown],
            same_size=same,
            source=figure.source,
            note=note,
        )
    return found


def _nearest_reported(size: str, figure: PaperFigure) -> str:
    order = [s.name for s in SIZES]
    return min(figure.by_size, key=lambda s: abs(order.index(s) - order.index(size)))


def paper_sizes() -> dict[str, int]:
    """The paper's sizes and the parameter counts of the released checkpoints, for charts."""
    return {size.name: size.parameters for size in SIZES}
