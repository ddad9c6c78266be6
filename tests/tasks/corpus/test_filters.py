"""Filters: each rule drops what it should, says why, and the chain counts it all."""

from __future__ import annotations

import pytest

from tasks.corpus.filters import (
    Decision,
    FilterChain,
    FilterSettings,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
    MinTokensFilter,
    _words,
    apply_filters,
)
from tasks.corpus.records import Document, Verdict

GOOD = """\
The city council voted on Tuesday to turn the old railway depot into a public library, \
ending a debate that had lasted for almost a decade and divided the neighbourhood.
Supporters of the plan said the building, which has stood empty since the last freight \
trains stopped running in 1998, was too important to the history of the town to be sold \
to developers. They argued that a library would bring families back to the area.
Opponents had warned that the renovation would cost far more than the council expected. \
An independent survey last year found damage to the roof and to the brick walls of the \
north wing, and estimated that repairs alone would take two years.
The mayor said that the final budget included a reserve for such surprises and that work \
would begin in the spring. The library is expected to open its doors to the public in the \
autumn of the following year, with a reading room in the former ticket hall.
Local historians have offered to lend photographs and old timetables for an exhibition, \
and the school board hopes to run reading clubs there once the building is finished."""

GERMAN = """\
Der Stadtrat hat am Dienstag beschlossen, das alte Bahndepot in eine öffentliche Bibliothek \
umzuwandeln. Damit endet eine Debatte, die fast ein Jahrzehnt gedauert und die Nachbarschaft \
gespalten hatte. Die Befürworter des Plans sagten, das Gebäude, das seit der Einstellung des \
Güterverkehrs im Jahr 1998 leer steht, sei für die Geschichte der Stadt zu wichtig, um es an \
Bauträger zu verkaufen. Sie argumentierten, dass eine Bibliothek Familien zurück in die Gegend \
bringen würde. Die Gegner hatten gewarnt, dass die Renovierung weit mehr kosten würde als \
erwartet, und ein unabhängiges Gutachten fand Schäden am Dach und an den Mauern des Nordflügels."""

FRENCH = """\
Le conseil municipal a voté mardi la transformation de l'ancien dépôt ferroviaire en \
bibliothèque publique, mettant fin à un débat qui durait depuis près de dix ans et qui avait \
divisé le quartier. Les partisans du projet ont déclaré que le bâtiment, vide depuis l'arrêt \
des derniers trains de marchandises en 1998, était trop important pour l'histoire de la ville \
pour être vendu à des promoteurs. Ils ont fait valoir qu'une bibliothèque ramènerait les \
familles dans le quartier. Les opposants avaient averti que la rénovation coûterait beaucoup \
plus cher que prévu, et une expertise indépendante a trouvé des dégâts sur le toit."""

SETTINGS = FilterSettings()


def doc(text: str) -> Document:
    return Document(url="https://example.com/x", title=None, text=text)


def test_good_english_text_passes_every_filter():
    chain = FilterChain.from_settings(SETTINGS)
    assert chain.check(doc(GOOD)) == Decision(True)


# ---------------------------------------------------------------------------------------
# Language and length
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "language"), [(GERMAN, "de"), (FRENCH, "fr")])
def test_other_languages_are_not_english(text, language):
    decision = LanguageFilter(["en"], 0.65, 10_000)(doc(text))
    assert (decision.keep, decision.reason) == (False, "not_english")
    assert decision.detail.startswith(f"{language} p=")


def test_language_list_and_score_are_configurable():
    assert LanguageFilter(["en", "de"], 0.65, 10_000)(doc(GERMAN)).keep
    assert LanguageFilter(["de"], 0.65, 10_000)(doc(GOOD)).reason == "wrong_language"
    # Nothing is sure enough at a minimum score above 1.
    assert not LanguageFilter(["en"], 1.0, 10_000)(doc("Click here")).keep


def test_min_tokens_counts_gpt2_pretokenisation_pieces():
    # " word" is one piece of GPT-2's split pattern (and one BPE token).
    short = MinTokensFilter(128)(doc(" word" * 127))
    assert short == Decision(False, "too_short", "127 pieces < 128")
    assert MinTokensFilter(128)(doc(" word" * 128)).keep
    # The English sentence "It's 42." is 4 pieces: "It", "'s", " 42", ".".
    assert MinTokensFilter(5)(doc("It's 42.")) == Decision(False, "too_short", "4 pieces < 5")


def test_a_short_english_text_is_too_short():
    decision = FilterChain.from_settings(SETTINGS).check(doc(GOOD.splitlines()[0]))
    assert (decision.keep, decision.reason) == (False, "too_short")


# ---------------------------------------------------------------------------------------
# Gopher quality rules: one crafted text per rule
# ---------------------------------------------------------------------------------------

SENTENCE = "The farmer and the miller talked about the weather with their neighbours. "
HESITANT = "so... well... maybe... who knows... ok... fine... Done."  # 7 ellipses, ends in "."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (SENTENCE * 2, "gopher_word_count"),  # 22 words < 50
        ("the and " + "antidisestablishmentarianism " * 60, "gopher_mean_word_length"),
        ("to be or of we it is at " * 10, "gopher_mean_word_length"),  # mean 2 letters
        (SENTENCE * 5 + "#news #today #weather #farm #life #love #mill", "gopher_symbol_ratio"),
        (SENTENCE * 4 + HESITANT, "gopher_symbol_ratio"),
        ("\n".join(f"- {SENTENCE}" for _ in range(10)), "gopher_bullet_lines"),
        (
            "\n".join(SENTENCE + ("and so on..." if i < 4 else "") for i in range(10)),
            "gopher_ellipsis_lines",
        ),
        (SENTENCE * 5 + " ".join(str(1000 + i) for i in range(40)), "gopher_alpha_words"),
        (
            "Buy cheap shoes online today. Best prices guaranteed, free shipping worldwide. " * 6,
            "gopher_stop_words",
        ),
    ],
    ids=[
        "word-count",
        "long-words",
        "short-words",
        "hashes",
        "ellipses",
        "bullets",
        "ellipsis-lines",
        "numbers",
        "no-stop-words",
    ],
)
def test_each_gopher_quality_rule(text, reason):
    decision = GopherQualityFilter()(doc(text))
    assert (decision.keep, decision.reason) == (False, reason), decision
    assert decision.detail


def test_gopher_quality_keeps_prose():
    assert GopherQualityFilter()(doc(GOOD)).keep


# ---------------------------------------------------------------------------------------
# Gopher repetition rules
# ---------------------------------------------------------------------------------------

LINES = GOOD.splitlines()
# 40 distinct words that occur nowhere else in GOOD.
PASSAGE = (
    "Quietly, seven orange kites drifted above Marrow Hill while engineers sketched bridges "
    "across unnamed rivers; nobody expected violins, lanterns, or copper teapots arriving "
    "before dawn, yet somehow every village welcomed strangers bearing maps, riddles, cheese"
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # 4 of 9 lines repeat an earlier one: 44% > 30%.
        ("\n".join(LINES + [LINES[0]] * 4), "gopher_repeated_lines"),
        # 1 of 4 lines repeats (25% <= 30%), but it is the longest: > 20% of characters.
        ("\n".join([LINES[1], LINES[0], LINES[2], LINES[1]]), "gopher_repeated_line_chars"),
        # One phrase everywhere: its 2-gram holds more than 20% of the characters.
        (" ".join(f"click here {word}" for word in GOOD.split()[:60]), "gopher_top_ngram"),
        # A 40-word passage said twice inside one line: repeated 5-grams > 15%.
        (GOOD.replace("\n", " ") + " " + PASSAGE + " " + PASSAGE, "gopher_duplicate_ngrams"),
    ],
    ids=["lines", "line-chars", "top-ngram", "duplicate-ngrams"],
)
def test_each_gopher_repetition_rule(text, reason):
    decision = GopherRepetitionFilter()(doc(text))
    assert (decision.keep, decision.reason) == (False, reason), decision


def test_gopher_repetition_keeps_prose():
    assert GopherRepetitionFilter()(doc(GOOD)).keep


def test_each_filter_takes_its_own_thresholds():
    assert not GopherQualityFilter()(doc(SENTENCE)).keep
    assert GopherQualityFilter(min_words=1, min_stop_words=0)(doc(SENTENCE)).keep
    strict = GopherRepetitionFilter(max_top_ngram_chars_fraction={2: 0.001})
    assert strict(doc(GOOD)).reason == "gopher_top_ngram"


def test_the_chain_passes_the_settings_thresholds_on():
    loose = FilterChain.from_settings(FilterSettings(min_words=1, min_stop_words=0, min_tokens=1))
    assert loose.check(doc(SENTENCE)).keep
    strict = FilterChain.from_settings(FilterSettings(max_top_ngram_chars_fraction={2: 0.001}))
    assert strict.check(doc(GOOD)).reason == "gopher_top_ngram"


def test_default_settings_give_each_filter_its_own_defaults():
    """The defaults are written twice (settings and filters): they must agree."""
    from_settings = FilterChain.from_settings(FilterSettings()).filters
    defaults = [
        LanguageFilter(),
        MinTokensFilter(),
        GopherQualityFilter(),
        GopherRepetitionFilter(),
    ]
    assert [vars(f) for f in from_settings] == [vars(f) for f in defaults]


# ---------------------------------------------------------------------------------------
# The chain and its counters
# ---------------------------------------------------------------------------------------


def test_chain_stops_at_first_failure_and_counts_why():
    chain = FilterChain.from_settings(SETTINGS)
    items = [
        doc(GOOD),
        doc(GERMAN),
        doc(FRENCH),
        doc(LINES[0]),  # too short
        Verdict("extract", "no_main_text"),  # from an earlier stage: passed through
        doc(GOOD + "\n" + "\n".join([LINES[1]] * 4)),  # repeated lines
        doc(GOOD),
    ]
    results = apply_filters(items, SETTINGS, chain=chain)

    assert results[0] is items[0] and results[6] is items[6]
    assert results[4] is items[4]
    assert [r.reason for r in results if isinstance(r, Verdict) and r.stage == "filter"] == [
        "not_english",
        "not_english",
        "too_short",
        "gopher_repeated_lines",
    ]
    assert results[1].detail.startswith("de p=")

    stats = chain.stats
    assert (stats["language"].seen, stats["language"].kept) == (6, 4)
    assert stats["language"].dropped == {"not_english": 2}
    assert (stats["min_tokens"].seen, stats["min_tokens"].kept) == (4, 3)
    assert (stats["gopher_quality"].seen, stats["gopher_quality"].kept) == (3, 3)
    assert (stats["gopher_repetition"].seen, stats["gopher_repetition"].kept) == (3, 2)
    assert chain.counters() == {
        "language.seen": 6,
        "language.kept": 4,
        "language.dropped.not_english": 2,
        "min_tokens.seen": 4,
        "min_tokens.kept": 3,
        "min_tokens.dropped.too_short": 1,
        "gopher_quality.seen": 3,
        "gopher_quality.kept": 3,
        "gopher_repetition.seen": 3,
        "gopher_repetition.kept": 2,
        "gopher_repetition.dropped.gopher_repeated_lines": 1,
    }


def test_apply_filters_without_a_chain():
    results = apply_filters([doc(GOOD), doc(GERMAN)], SETTINGS)
    assert results[0] == doc(GOOD)
    assert results[1] == Verdict("filter", "not_english", results[1].detail)


def test_settings_reject_nonsense():
    with pytest.raises(ValueError, match="min_language_score"):
        FilterSettings(min_language_score=1.5)
    with pytest.raises(ValueError, match="languages"):
        FilterSettings(languages=[])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The dog.  barked, (twice)!", ("The", "dog", "barked", "twice")),
        ("— ... «quoted» $5 #tag 3.14 x—y", ("quoted", "5", "tag", "3.14", "x—y")),
        ("naïve café ¿qué? 東京。", ("naïve", "café", "qué", "東京")),
        ("", ()),
    ],
)
def test_words_lose_edge_punctuation_and_symbols_only(text, words):
    # The Gopher rules count these words: punctuation and symbols (Unicode P and S) at a
    # word's edges go, inside a word they stay, and a token of nothing else is no word.
    assert _words(text) == words


def test_duplicate_ngram_rule_stops_early_only_when_no_longer_ngram_can_repeat():
    """The filter stops counting at the first n without repeats; the verdicts must be those
    of counting every n from 5 to 10 (random texts, with passages repeated at random)."""
    import random

    from tasks.corpus.filters import DUPLICATE_NGRAM_CHARS_LIMITS, _duplicate_ngram_chars

    def counted_every_n(text: str) -> str | None:
        words = [word.lower() for word in text.split()]
        total = sum(map(len, words))
        for n, limit in sorted(DUPLICATE_NGRAM_CHARS_LIMITS.items()):
            share = _duplicate_ngram_chars(words, n) / total
            if share > limit:
                return f"{n}-grams: {share:.0%} of characters"
        return None

    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(400)]
    dropped = 0
    for _ in range(300):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(20, 200))]
        for _ in range(rng.randint(0, 3)):  # repeat a passage of 4 to 12 words
            start = rng.randrange(len(words))
            passage = words[start : start + rng.randint(4, 12)]
            where = rng.randrange(len(words) + 1)
            words[where:where] = passage
        text = " ".join(words)
        expected = counted_every_n(text)
        filtered = GopherRepetitionFilter(
            max_top_ngram_chars_fraction={}, max_duplicate_lines_fraction=1.0,
            max_duplicate_line_chars_fraction=1.0,
        )(doc(text))  # fmt: skip
        assert filtered.keep == (expected is None)
        if expected is not None:
            assert filtered.detail == expected
            dropped += 1
    assert 30 < dropped < 270  # both verdicts were exercised
