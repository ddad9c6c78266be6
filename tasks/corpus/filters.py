"""Filters: which extracted documents are good enough to train on, and why the rest are not.

Each filter is a small class with a `name` that looks at one document and returns a
`Decision`: keep or drop, and for a drop a stable reason code ("not_english",
"too_short", "gopher_stop_words", ...) plus a detail for humans. This is datatrove's
`(keep, reason)` convention, with the measured value added so a dropped document can be
explained without re-running anything. `FilterChain` runs the filters in order, stops
at the first failure, and counts, per filter, what it saw, kept and dropped by reason.

Each filter takes the thresholds it uses, by name, with the defaults below; only
`FilterChain.from_settings` reads `FilterSettings` (the flow's config), so a filter can be
built, tested and reused on its own.

The quality rules are those of Gopher's MassiveText (Rae et al. 2021, "Scaling Language
Models: Methods, Analysis & Insights from Training Gopher", appendix A.1.1 "quality
filtering" and table A1 "repetition removal"), with the paper's thresholds as defaults.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from types import MappingProxyType
from typing import NamedTuple, Protocol

import regex
from pydantic import BaseModel, ConfigDict, Field

from model.tokenizer.byte_map import GPT2_SPLIT_PATTERN
from tasks.corpus.records import Document, Verdict

STAGE = "filter"

# Gopher's n-gram repetition limits (table A1), shared by the filter's defaults and the
# settings' (read-only, so that no caller can change the defaults for everyone).
TOP_NGRAM_CHARS_LIMITS: Mapping[int, float] = MappingProxyType({2: 0.20, 3: 0.18, 4: 0.16})
DUPLICATE_NGRAM_CHARS_LIMITS: Mapping[int, float] = MappingProxyType(
    {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
)


class FilterSettings(BaseModel):
    """Every threshold of the filter chain. Defaults: OpenWebText's length rule and
    Gopher's quality and repetition rules (Rae et al. 2021, appendix A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Language
    languages: list[str] = Field(default=["en"], min_length=1, description="ISO 639-1 codes")
    min_language_score: float = Field(
        default=0.65,
        ge=0,
        le=1,
        description="Least probability of the detected language (py3langid, normalised). "
        "0.65 is the cut-off CCNet and FineWeb use with fastText's language ID.",
    )
    language_sample_chars: int = Field(
        default=4_000,
        gt=0,
        description="Language ID reads this many leading characters (about 700 words): "
        "plenty to tell languages apart, and py3langid walks the text byte by byte in "
        "Python (about 2.5 MB/s), so whole long documents would cost milliseconds each.",
    )
    # Length
    min_tokens: int = Field(
        default=128,
        ge=0,
        description="Least GPT-2 pre-tokenisation pieces (OpenWebText kept >= 128 tokens).",
    )
    # Gopher quality (appendix A.1.1)
    min_words: int = Field(default=50, ge=0)
    max_words: int = Field(default=100_000, gt=0)
    min_mean_word_length: float = Field(default=3.0, ge=0)
    max_mean_word_length: float = Field(default=10.0, gt=0)
    max_symbol_word_ratio: float = Field(
        default=0.1, ge=0, description="'#' per word, and '...'/'…' per word, each."
    )
    max_bullet_lines_fraction: float = Field(default=0.9, ge=0, le=1)
    max_ellipsis_lines_fraction: float = Field(default=0.3, ge=0, le=1)
    min_alpha_words_fraction: float = Field(
        default=0.8, ge=0, le=1, description="Words holding at least one letter."
    )
    min_stop_words: int = Field(
        default=2, ge=0, description="Occurrences of the, be, to, of, and, that, have, with."
    )
    # Gopher repetition (table A1)
    max_duplicate_lines_fraction: float = Field(default=0.3, ge=0, le=1)
    max_duplicate_line_chars_fraction: float = Field(default=0.2, ge=0, le=1)
    max_top_ngram_chars_fraction: dict[int, float] = Field(
        default=dict(TOP_NGRAM_CHARS_LIMITS),
        description="n -> most frequent n-gram's share of the characters.",
    )
    max_duplicate_ngram_chars_fraction: dict[int, float] = Field(
        default=dict(DUPLICATE_NGRAM_CHARS_LIMITS),
        description="n -> share of the characters inside n-grams seen before.",
    )


class Decision(NamedTuple):
    """A filter's answer: keep or not; for a drop, a stable reason code and a detail."""

    keep: bool
    reason: str = ""
    detail: str = ""


KEEP = Decision(True)


class DocumentFilter(Protocol):
    """What the chain needs of a filter: a name, and a decision for one document."""

    name: str

    def __call__(self, doc: Document) -> Decision: ...


# ---------------------------------------------------------------------------------------
# Language
# ---------------------------------------------------------------------------------------


@cache
def _language_identifier():
    """py3langid's model, loaded once per process (about 0.6 s). Its model file ships
    inside the package, so nothing is downloaded. `norm_probs=True` turns its scores
    into probabilities, which is what a threshold needs."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LanguageFilter:
    """Keep documents in one of `languages`, detected with enough confidence."""

    name = "language"

    def __init__(
        self, languages: Sequence[str] = ("en",), min_score: float = 0.65, sample_chars: int = 4_000
    ) -> None:
        self.languages = set(languages)
        self.min_score = min_score
        self.sample_chars = sample_chars
        self.reason = "not_english" if self.languages == {"en"} else "wrong_language"

    def __call__(self, doc: Document) -> Decision:
        language, score = _language_identifier().classify(doc.text[: self.sample_chars])
        if language in self.languages and score >= self.min_score:
            return KEEP
        return Decision(False, self.reason, f"{language} p={score:.2f}")


# ---------------------------------------------------------------------------------------
# Length
# ---------------------------------------------------------------------------------------

_GPT2_PIECES = regex.compile(GPT2_SPLIT_PATTERN)


class MinTokensFilter:
    """Keep documents of at least `min_tokens` tokens, as OpenWebText did (128).

    We count the pieces of GPT-2's pre-tokenisation regex instead of BPE tokens: BPE
    never merges across those pieces, so every piece is at least one token and the count
    is a lower bound on the real one. It needs no vocabulary, and counting stops as soon
    as the threshold is reached, so long documents cost almost nothing.
    """

    name = "min_tokens"

    def __init__(self, min_tokens: int = 128) -> None:
        self.min_tokens = min_tokens

    def __call__(self, doc: Document) -> Decision:
        count = 0
        for _ in _GPT2_PIECES.finditer(doc.text):
            count += 1
            if count >= self.min_tokens:
                return KEEP
        if count >= self.min_tokens:  # only when min_tokens is 0
            return KEEP
        return Decision(False, "too_short", f"{count} pieces < {self.min_tokens}")


# ---------------------------------------------------------------------------------------
# Gopher quality rules (Rae et al. 2021, appendix A.1.1)
# ---------------------------------------------------------------------------------------

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "-", "*", "–", "·")
_EDGE_PUNCTUATION = regex.compile(r"^[\p{P}\p{S}]+|[\p{P}\p{S}]+$")
_HAS_LETTER = regex.compile(r"\p{L}")


def _has_letter(token: str) -> bool:
    # str.isalpha is exactly "a letter" (categories L*); most words start with one.
    return token[0].isalpha() or _HAS_LETTER.search(token) is not None


# The quality and the repetition filters both read the words and lines of the same
# document, one right after the other: a one-entry cache splits each text once. (A str
# caches its own hash, so looking the text up costs next to nothing.) Tuples, because
# the cached value is shared.
@lru_cache(maxsize=1)
def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words without their leading/trailing punctuation ("dog." ->
    "dog"); pure punctuation ("—", "...") is not a word."""
    words = []
    for token in text.split():
        # Most tokens start and end with a letter or digit, which is never punctuation
        # or a symbol: only the others need the (slower) regex.
        if not (token[0].isalnum() and token[-1].isalnum()):
            token = _EDGE_PUNCTUATION.sub("", token)
            if not token:
                continue
        words.append(token)
    return tuple(words)


@lru_cache(maxsize=1)
def _lines(text: str) -> tuple[str, ...]:
    """The non-blank lines, stripped."""
    return tuple(line for line in map(str.strip, text.splitlines()) if line)


class GopherQualityFilter:
    """Gopher's quality heuristics: does this read like prose written for people?

    Word count (50..100,000), mean word length (3..10), '#' and ellipsis per word
    (<= 0.1 each), lines that are bullets (<= 90%) or end in an ellipsis (<= 30%), words
    with a letter (>= 80%), and at least two English stop words. Datatrove counts stop
    word occurrences, not distinct stop words; so do we.
    """

    name = "gopher_quality"

    def __init__(
        self,
        *,
        min_words: int = 50,
        max_words: int = 100_000,
        min_mean_word_length: float = 3.0,
        max_mean_word_length: float = 10.0,
        max_symbol_word_ratio: float = 0.1,
        max_bullet_lines_fraction: float = 0.9,
        max_ellipsis_lines_fraction: float = 0.3,
        min_alpha_words_fraction: float = 0.8,
        min_stop_words: int = 2,
    ) -> None:
        self.min_words = min_words
        self.max_words = max_words
        self.min_mean_word_length = min_mean_word_length
        self.max_mean_word_length = max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_fraction = max_bullet_lines_fraction
        self.max_ellipsis_lines_fraction = max_ellipsis_lines_fraction
        self.min_alpha_words_fraction = min_alpha_words_fraction
        self.min_stop_words = min_stop_words

    def __call__(self, doc: Document) -> Decision:
        text = doc.text
        words = _words(text)
        n_words = len(words)
        if not self.min_words <= n_words <= self.max_words:
            return Decision(False, "gopher_word_count", f"{n_words} words")

        mean_length = sum(map(len, words)) / n_words if n_words else 0.0
        if not self.min_mean_word_length <= mean_length <= self.max_mean_word_length:
            return Decision(False, "gopher_mean_word_length", f"{mean_length:.1f} characters")

        for symbol, count in (
            ("#", text.count("#")),
            ("ellipsis", text.count("...") + text.count("…")),
        ):
            if n_words and count / n_words > self.max_symbol_word_ratio:
                return Decision(False, "gopher_symbol_ratio", f"{symbol}: {count / n_words:.2f}")

        lines = _lines(text)
        if lines:
            bullets = sum(line.startswith(BULLETS) for line in lines) / len(lines)
            if bullets > self.max_bullet_lines_fraction:
                return Decision(False, "gopher_bullet_lines", f"{bullets:.0%} of lines")
            ellipsis = sum(line.endswith(("...", "…")) for line in lines) / len(lines)
            if ellipsis > self.max_ellipsis_lines_fraction:
                return Decision(False, "gopher_ellipsis_lines", f"{ellipsis:.0%} of lines")

        # Alphabetic and stop-word rules count raw tokens, punctuation-only ones included:
        # a page of numbers, symbols and dashes is exactly what they should catch.
        tokens = text.split()
        alpha = sum(1 for token in tokens if _has_letter(token)) / max(1, len(tokens))
        if alpha < self.min_alpha_words_fraction:
            return Decision(False, "gopher_alpha_words", f"{alpha:.0%} of words have a letter")

        stop_words = sum(1 for word in words if word.lower() in STOP_WORDS)
        if stop_words < self.min_stop_words:
            return Decision(False, "gopher_stop_words", f"{stop_words} stop words")
        return KEEP


# ---------------------------------------------------------------------------------------
# Gopher repetition rules (Rae et al. 2021, table A1)
# ---------------------------------------------------------------------------------------


def _top_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters covered by the most frequent n-gram, counted at each occurrence; 0 when
    no n-gram occurs twice (a single occurrence is not repetition)."""
    counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    if not counts:
        return 0
    gram, count = counts.most_common(1)[0]
    return sum(map(len, gram)) * count if count > 1 else 0


def _duplicate_ngram_chars(words: Sequence[str], n: int) -> int:
    """Characters of the words inside n-grams that occurred earlier in the text. After a
    repeat we jump past it, so overlapping repeats are not counted twice (as datatrove)."""
    seen: set[tuple[str, ...]] = set()
    repeated, i = 0, 0
    while i <= len(words) - n:
        gram = tuple(words[i : i + n])
        if gram in seen:
            repeated += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return repeated


class GopherRepetitionFilter:
    """Gopher's repetition rules: drop text that says the same thing over and over (menus
    copied into every paragraph, spam, generated pages).

    Lines: the fraction of lines that repeat an earlier line (<= 0.3) and the share of
    characters in them (<= 0.2). N-grams: the most frequent 2-, 3-, 4-gram's share of the
    characters (<= 0.20, 0.18, 0.16) and the share inside repeated 5- to 10-grams (<= 0.15
    down to 0.10). Gopher's paragraph rules are left out: trafilatura writes one paragraph
    per line, so they would repeat the line rules.
    """

    name = "gopher_repetition"

    def __init__(
        self,
        *,
        max_duplicate_lines_fraction: float = 0.3,
        max_duplicate_line_chars_fraction: float = 0.2,
        max_top_ngram_chars_fraction: Mapping[int, float] = TOP_NGRAM_CHARS_LIMITS,
        max_duplicate_ngram_chars_fraction: Mapping[int, float] = DUPLICATE_NGRAM_CHARS_LIMITS,
    ) -> None:
        self.max_duplicate_lines_fraction = max_duplicate_lines_fraction
        self.max_duplicate_line_chars_fraction = max_duplicate_line_chars_fraction
        # n -> limit, checked smallest n first: a drop names the shortest n that broke its limit.
        self.max_top_ngram_chars_fraction = dict(sorted(max_top_ngram_chars_fraction.items()))
        self.max_duplicate_ngram_chars_fraction = dict(
            sorted(max_duplicate_ngram_chars_fraction.items())
        )

    def __call__(self, doc: Document) -> Decision:
        lines = _lines(doc.text)
        if lines:
            seen: set[str] = set()
            duplicates, duplicate_chars = 0, 0
            for line in lines:
                if line in seen:
                    duplicates += 1
                    duplicate_chars += len(line)
                seen.add(line)
            if duplicates / len(lines) > self.max_duplicate_lines_fraction:
                return Decision(
                    False, "gopher_repeated_lines", f"{duplicates / len(lines):.0%} of lines"
                )
            total_chars = sum(map(len, lines))
            if duplicate_chars / total_chars > self.max_duplicate_line_chars_fraction:
                share = duplicate_chars / total_chars
                return Decision(False, "gopher_repeated_line_chars", f"{share:.0%} of characters")

        words = [word.lower() for word in _words(doc.text)]
        total = sum(map(len, words))
        if not total:
            return KEEP
        for n, limit in self.max_top_ngram_chars_fraction.items():
            share = _top_ngram_chars(words, n) / total
            if share > limit:
                return Decision(False, "gopher_top_ngram", f"{n}-gram: {share:.0%} of characters")
        for n, limit in self.max_duplicate_ngram_chars_fraction.items():
            repeated = _duplicate_ngram_chars(words, n)
            if not repeated:
                # No n-gram occurs twice, so no longer one does either (its first n words
                # would): the larger n have nothing to count. Most documents stop here.
                break
            share = repeated / total
            if share > limit:
                return Decision(
                    False, "gopher_duplicate_ngrams", f"{n}-grams: {share:.0%} of characters"
                )
        return KEEP


# ---------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------


@dataclass
class FilterStats:
    """What one filter saw, kept, and dropped (by reason)."""

    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


class FilterChain:
    """Filters applied in order; a document stops at the first one that drops it."""

    def __init__(self, filters: Sequence[DocumentFilter]) -> None:
        self.filters = list(filters)
        self.stats = {f.name: FilterStats() for f in self.filters}

    @classmethod
    def from_settings(cls, settings: FilterSettings) -> FilterChain:
        """The default funnel, cheap and decisive filters first: the one place where the
        flow's settings become each filter's own thresholds."""
        return cls(
            [
                LanguageFilter(
                    languages=settings.languages,
                    min_score=settings.min_language_score,
                    sample_chars=settings.language_sample_chars,
                ),
                MinTokensFilter(min_tokens=settings.min_tokens),
                GopherQualityFilter(
                    min_words=settings.min_words,
                    max_words=settings.max_words,
                    min_mean_word_length=settings.min_mean_word_length,
                    max_mean_word_length=settings.max_mean_word_length,
                    max_symbol_word_ratio=settings.max_symbol_word_ratio,
                    max_bullet_lines_fraction=settings.max_bullet_lines_fraction,
                    max_ellipsis_lines_fraction=settings.max_ellipsis_lines_fraction,
                    min_alpha_words_fraction=settings.min_alpha_words_fraction,
                    min_stop_words=settings.min_stop_words,
                ),
                GopherRepetitionFilter(
                    max_duplicate_lines_fraction=settings.max_duplicate_lines_fraction,
                    max_duplicate_line_chars_fraction=settings.max_duplicate_line_chars_fraction,
                    max_top_ngram_chars_fraction=settings.max_top_ngram_chars_fraction,
                    max_duplicate_ngram_chars_fraction=settings.max_duplicate_ngram_chars_fraction,
                ),
            ]
        )

    def check(self, doc: Document) -> Decision:
        for doc_filter in self.filters:
            stats = self.stats[doc_filter.name]
            stats.seen += 1
            decision = doc_filter(doc)
            if not decision.keep:
                stats.dropped[decision.reason] += 1
                return decision
            stats.kept += 1
        return KEEP

    def apply(self, items: Iterable[Document | Verdict]) -> list[Document | Verdict]:
        """One result per item, same order. Verdicts from earlier stages pass through."""
        results: list[Document | Verdict] = []
        for item in items:
            if isinstance(item, Verdict):
                results.append(item)
                continue
            decision = self.check(item)
            results.append(
                item if decision.keep else Verdict(STAGE, decision.reason, decision.detail)
            )
        return results

    def counters(self) -> dict[str, int]:
        """Flat counters for logging, e.g. {"language.dropped.not_english": 2}."""
        flat: dict[str, int] = {}
        for name, stats in self.stats.items():
            flat[f"{name}.seen"] = stats.seen
            flat[f"{name}.kept"] = stats.kept
            for reason, count in sorted(stats.dropped.items()):
                flat[f"{name}.dropped.{reason}"] = count
        return flat


def apply_filters(
    docs: Iterable[Document | Verdict],
    settings: FilterSettings,
    chain: FilterChain | None = None,
) -> list[Document | Verdict]:
    """Filter documents: each one comes back as itself or as Verdict(stage="filter", ...).

    Pass your own `chain` (e.g. `FilterChain.from_settings(settings)`) to read its
    counters afterwards; `settings` is then unused.
    """
    if chain is None:
        chain = FilterChain.from_settings(settings)
    return chain.apply(docs)
