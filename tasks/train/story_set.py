"""A made-up prose set for the stylistic preference experiment: short stories whose
mood varies, so that a small model trained on them writes continuations a sentiment
scorer can tell apart.

Each story opens with a neutral sentence (who, where, when) and goes on in one of three
moods: bright, gloomy or plain. The opening says nothing about the mood, so a model
trained on these stories continues an opening brightly about a third of the time: the
spread that preference tuning can then shift. Made from word lists: the same seed, the
same text.

The openings are split once, by seed, into three disjoint sets: those the start model is
trained on, those whose continuations are compared to train the reward model and DPO,
and those kept for judging the tuned model. No prompt is ever in two of them.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

NAMES = [
    "Mara", "Tomas", "Ines", "Owen", "Lena", "Felix", "Nadia", "Jonas", "Clara", "Ravi",
    "Elsa", "Hugo", "Amira", "Pavel", "Greta", "Samuel", "Yara", "Leo", "Ida", "Victor",
    "Noor", "Oskar", "Maya", "Emil", "Rosa", "Arjun", "Sofia", "Milo", "Hana", "Bruno",
]  # fmt: skip
PLACES = [
    "the old market", "the harbour", "the village school", "the train station",
    "her grandmother's kitchen", "the city library", "the mountain path", "the bakery",
    "the small farm", "the river bank", "the hospital corridor", "the town square",
    "the lighthouse", "the bookshop", "the orchard", "the empty theatre", "the bus stop",
    "the night ferry", "the garden shed", "the village hall", "the fishing boat",
    "the museum", "the back office", "the football field", "the old mill",
]  # fmt: skip
TIMES = [
    "on a cold morning", "late one evening", "just after noon", "on the first day of spring",
    "at dawn", "on a rainy Tuesday", "in the middle of winter", "one summer afternoon",
    "before the shops opened", "on the last day of the year", "after the storm",
    "on market day",
]  # fmt: skip

# Sentences of each mood; {name} is the story's person. Bright and gloomy sentences carry
# the words a sentiment lexicon knows (wonderful, happy, sad, terrible); plain ones do not.
MOODS: dict[str, list[str]] = {
    "bright": [
        "The air was warm and the light was wonderful.",
        "{name} smiled, happy to be there at last.",
        "An old friend waved and laughed, and it felt great to see them.",
        "Everyone was kind, and the day felt full of hope.",
        "{name} felt proud and grateful for the good news.",
        "The music was lovely and the people were cheerful.",
        "It was a beautiful, peaceful moment, and {name} loved it.",
        "A small gift was waiting, and {name} was delighted.",
        "The work went well, and the success made everyone glad.",
        "They shared fresh bread and sweet tea, and it was perfect.",
    ],
    "gloomy": [
        "The air was cold and the light was grim.",
        "{name} frowned, tired and sad to be there again.",
        "An old enemy stared and sneered, and it felt awful to see them.",
        "Everyone was rude, and the day felt hopeless.",
        "{name} felt ashamed and angry about the bad news.",
        "The noise was terrible and the people were miserable.",
        "It was an ugly, painful moment, and {name} hated it.",
        "A broken letter was waiting, and {name} was upset.",
        "The work went badly, and the failure made everyone worried.",
        "They shared stale bread and bitter tea, and it was horrible.",
    ],
    "plain": [
        "The room had two windows and a wooden door.",
        "{name} counted the boxes and wrote the number down.",
        "A man walked past carrying a ladder and a bucket.",
        "The clock on the wall showed a quarter past ten.",
        "{name} opened the bag and took out a notebook.",
        "The street was wide, with a row of shops on one side.",
        "A bus stopped, and three people got off.",
        "{name} read the notice on the board and walked on.",
        "The table was set with plates, cups and a jug of water.",
        "Somebody had left a coat on the chair by the stairs.",
    ],
}
SENTENCES_PER_STORY = (2, 4)  # after the opening


def openings() -> list[str]:
    """Every opening sentence the word lists make, in a fixed order (9,000 of them)."""
    return [
        f"{name} went to {place} {time}."
        for name, place, time in itertools.product(NAMES, PLACES, TIMES)
    ]


@dataclass(frozen=True)
class OpeningSplit:
    """Disjoint sets of openings: see the module doc."""

    train: list[str]  # the start model is trained on stories with these openings
    compare: list[str]  # prompts of the comparisons the reward model and DPO learn from
    judge: list[str]  # prompts of the final judgement, tuned vs start


def split_openings(train: int, compare: int, judge: int, seed: int = 0) -> OpeningSplit:
    """Draw three disjoint sets of openings of the given sizes; ValueError if the word
    lists cannot make that many."""
    every = openings()
    if train + compare + judge > len(every):
        raise ValueError(
            f"story openings: {train} + {compare} + {judge} asked for, the word lists make "
            f"{len(every)}"
        )
    random.Random(seed).shuffle(every)
    return OpeningSplit(
        train=every[:train],
        compare=every[train : train + compare],
        judge=every[train + compare : train + compare + judge],
    )


def story(opening: str, rng: random.Random) -> str:
    """One story: the opening, then sentences of one mood drawn at random."""
    name = opening.split(" ", 1)[0]
    mood = rng.choice(sorted(MOODS))
    count = rng.randint(*SENTENCES_PER_STORY)
    sentences = rng.sample(MOODS[mood], count)
    return " ".join([opening, *(s.format(name=name) for s in sentences)])


def story_texts(opening_list: list[str], seed: int = 0, repeats: int = 1) -> list[str]:
    """One story per opening, `repeats` times over (each time a new draw of mood and
    sentences): the documents of the start model's corpus."""
    rng = random.Random(seed)
    return [story(opening, rng) for _ in range(repeats) for opening in opening_list]
