"""The made-up stories of the stylistic experiment: the same seed gives the same text,
the three sets of openings never share a prompt, and the moods are spread evenly."""

from __future__ import annotations

import pytest

from tasks.preferences.sentiment import positivity
from tasks.train.story_set import openings, split_openings, story_texts


def test_the_sets_of_openings_are_disjoint_and_fixed_by_the_seed():
    split = split_openings(3000, 5000, 200, seed=0)
    sets = [set(split.train), set(split.compare), set(split.judge)]
    assert [len(s) for s in sets] == [3000, 5000, 200]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert split_openings(3000, 5000, 200, seed=0) == split
    assert split_openings(3000, 5000, 200, seed=1).judge != split.judge


def test_asking_for_more_openings_than_exist_names_the_numbers():
    with pytest.raises(ValueError, match=f"make {len(openings())}"):
        split_openings(len(openings()), 1, 1)


def test_stories_start_with_their_opening_and_vary_in_mood():
    some = split_openings(300, 0, 0).train
    texts = story_texts(some, seed=3)
    assert texts == story_texts(some, seed=3)
    assert all(text.startswith(opening) for text, opening in zip(texts, some, strict=True))
    scores = [positivity(text) for text in texts]
    bright = sum(s > 0.5 for s in scores) / len(scores)
    gloomy = sum(s < -0.5 for s in scores) / len(scores)
    assert 0.2 < bright < 0.45 and 0.2 < gloomy < 0.45
