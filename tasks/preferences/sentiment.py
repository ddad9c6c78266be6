"""How positive a text reads, by VADER (Hutto & Gilbert, 2014): a sentiment lexicon with
rules for negation, intensifiers and punctuation, shipped with its word list, so it
scores offline and the same way everywhere.

The stylistic preference experiment's scripted annotator asks it which of two
continuations is the more positive: the judgement of Ziegler et al.'s (2019) sentiment
task, made by a scorer nobody here wrote rather than by people.
"""

from __future__ import annotations

from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads its lexicon once


def positivity(text: str) -> float:
    """VADER's compound score of `text`: -1 (most negative) to +1 (most positive), 0 for
    text without sentiment words."""
    return float(_analyzer().polarity_scores(text)["compound"])
