"""Deduplication: exact and near copies are found, the first copy is kept, nothing else."""

from __future__ import annotations

import re

import pytest

from tasks.corpus.dedup import (
    Deduplicator,
    DedupSettings,
    content_hash,
    find_duplicates,
    normalize_for_hash,
)
from tasks.corpus.records import Verdict

ARTICLE = """\
The city council voted on Tuesday to turn the old railway depot into a public library, \
ending a debate that had lasted for almost a decade and divided the neighbourhood. \
Supporters of the plan said the building, which has stood empty since the last freight \
trains stopped running in 1998, was too important to the history of the town to be sold \
to developers. They argued that a library would bring families back to the area and give \
students a quiet place to work in the evenings. Opponents had warned that the renovation \
would cost far more than the council expected. An independent survey last year found \
damage to the roof and to the brick walls of the north wing, and estimated that repairs \
alone would take two years. The mayor said that the final budget included a reserve for \
such surprises and that work would begin in the spring. The library is expected to open \
its doors to the public in the autumn of the following year, with a reading room in the \
former ticket hall and a children's corner on the old platform. Local historians have \
offered to lend photographs and timetables for an exhibition about the line, and the \
school board hopes to run reading clubs there once the building is finished. The council \
will publish the architect's drawings next month and invite residents to comment on them \
at a public meeting in the town hall. A spokesman for the railway company, which still \
owns the tracks beside the depot, said it welcomed the decision and would fence off the \
remaining sidings during the works."""

# Same story, told by another paper: same topic and names, different sentences.
SAME_TOPIC = """\
After years of argument, councillors have approved plans to convert the disused railway \
depot on Station Road into the town's new public library. The depot, closed since freight \
services ended in 1998, had been eyed by property developers, but campaigners insisted that \
it belonged to the community. Critics of the scheme pointed to a survey showing a damaged \
roof and crumbling brickwork in the north wing, warning that costs could spiral. The mayor \
told reporters that a contingency fund had been set aside and that builders would move in \
next spring, with the doors due to open the following autumn. Plans include a reading room \
in the old ticket hall, a space for children on the former platform, and an exhibition of \
photographs lent by local historians. Residents will be able to view the drawings and give \
their views at a meeting in the town hall next month."""


def edited(text: str, replacements: dict[int, str]) -> str:
    """The text with the words at the given positions replaced."""
    words = text.split()
    for position, word in replacements.items():
        words[position] = word
    return " ".join(words)


# Three words changed out of about 300: a repost with a corrected typo and a new date.
NEAR_COPY = edited(ARTICLE, {4: "Monday", 120: "begin", 250: "lately"})


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert normalize_for_hash("Hello,  World!\n") == "hello world"
    assert normalize_for_hash("“Curly” quotes — and ﬁ ligatures") == "curly quotes and fi ligatures"
    assert content_hash(ARTICLE) == content_hash(ARTICLE.upper().replace(" ", "  "))
    assert content_hash(ARTICLE) != content_hash(NEAR_COPY)
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(ARTICLE))


def test_exact_duplicates_point_to_the_first_copy():
    docs = [(0, ARTICLE), (1, SAME_TOPIC), (2, ARTICLE.lower()), (3, "  " + ARTICLE + "\n")]
    verdicts = find_duplicates(docs, DedupSettings())
    assert verdicts == {
        2: Verdict("dedup", "exact_duplicate", "same as #0"),
        3: Verdict("dedup", "exact_duplicate", "same as #0"),
    }


def test_near_duplicate_found_and_same_topic_text_kept():
    verdicts = find_duplicates([(0, ARTICLE), (1, SAME_TOPIC), (2, NEAR_COPY)], DedupSettings())
    assert list(verdicts) == [2]
    verdict = verdicts[2]
    assert (verdict.stage, verdict.reason) == ("dedup", "near_duplicate")
    match = re.fullmatch(r"~#0 \(Jaccard≈(\d\.\d\d)\)", verdict.detail)
    assert match, verdict.detail
    assert 0.8 <= float(match.group(1)) < 1.0


def test_the_first_index_is_kept_whatever_the_text():
    # The edited copy comes first this time: it is kept, the original is the duplicate.
    verdicts = find_duplicates([(5, NEAR_COPY), (7, SAME_TOPIC), (9, ARTICLE)], DedupSettings())
    assert list(verdicts) == [9]
    assert verdicts[9].detail.startswith("~#5 ")


def test_documents_must_come_in_ascending_order():
    with pytest.raises(ValueError, match="ascending"):
        find_duplicates([(3, ARTICLE), (1, SAME_TOPIC)], DedupSettings())


def test_each_pass_can_be_switched_off():
    docs = [(0, ARTICLE), (1, NEAR_COPY), (2, ARTICLE)]
    near_only = find_duplicates(docs, DedupSettings(exact=False))
    assert near_only[2] == Verdict("dedup", "near_duplicate", "~#0 (Jaccard≈1.00)")
    assert near_only[1].reason == "near_duplicate"
    exact_only = find_duplicates(docs, DedupSettings(near=False))
    assert exact_only == {2: Verdict("dedup", "exact_duplicate", "same as #0")}


def test_a_stricter_threshold_keeps_the_edited_copy():
    docs = [(0, ARTICLE), (1, NEAR_COPY)]
    assert find_duplicates(docs, DedupSettings(threshold=0.99)) == {}


def test_results_are_deterministic_and_counted():
    docs = [(i, text) for i, text in enumerate([ARTICLE, SAME_TOPIC, NEAR_COPY, ARTICLE, "a b"])]
    first, second = Deduplicator(), Deduplicator()
    results = [[dedup.check(i, text) for i, text in docs] for dedup in (first, second)]
    assert results[0] == results[1]
    assert first.counts == {"kept": 3, "near_duplicate": 1, "exact_duplicate": 1}
    # Same signature in a fresh detector (fixed seed, no per-process hash salt).
    words = normalize_for_hash(ARTICLE).split()
    assert (first.signature(words).hashvalues == second.signature(words).hashvalues).all()


def test_short_and_empty_texts_do_not_break_shingling():
    verdicts = find_duplicates([(0, "Hi there"), (1, ""), (2, "hi, there!"), (3, "...")], None)
    assert verdicts == {
        2: Verdict("dedup", "exact_duplicate", "same as #0"),
        3: Verdict("dedup", "exact_duplicate", "same as #1"),  # both normalise to ""
    }
