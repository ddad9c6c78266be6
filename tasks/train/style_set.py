"""A style set for fine-tuning demos: text whose style is easy to recognise."""

from __future__ import annotations

import random


def style_set_text(entries: int = 400, seed: int = 0) -> str:
    """Entries of a made-up ship's log, one paragraph each: a style that is easy to spot
    ("Day 12. Wind from the north-east, ..."), so that a fine-tuned model's samples show
    at a glance whether fine-tuning took. Made from word lists: the same seed, the same text."""
    rng = random.Random(seed)
    winds = [
        "north",
        "north-east",
        "east",
        "south-east",
        "south",
        "south-west",
        "west",
        "north-west",
    ]
    strengths = ["a light breeze", "a fresh breeze", "a strong wind", "a near gale", "calm air"]
    skies = [
        "clear skies",
        "low cloud",
        "rain squalls",
        "thick fog",
        "a red sunrise",
        "scattered cloud",
        "a grey overcast",
    ]
    sightings = [
        "a pod of dolphins off the bow",
        "a merchant ship bound for the south",
        "gulls, so land is near",
        "driftwood and weed",
        "a whale blowing to port",
        "the lights of a fishing fleet",
        "nothing but open water",
    ]
    chores = [
        "mended the foresail",
        "pumped the bilge",
        "took a sounding",
        "checked the rigging",
        "salted the fish",
        "cleaned the lamps",
        "repainted the rail",
    ]
    moods = [
        "The crew is in good spirits.",
        "The crew is tired but steady.",
        "Rations are holding.",
        "All hands well.",
        "We sing at the evening watch.",
    ]
    paragraphs = []
    for day in range(1, entries + 1):
        wind, strength, sky = rng.choice(winds), rng.choice(strengths), rng.choice(skies)
        knots, miles = rng.randint(2, 9), rng.randint(20, 160)
        paragraphs.append(
            f"Day {day}. Wind from the {wind}, {strength}, with {sky}. Made {knots} knots; "
            f"{miles} miles since noon yesterday. Sighted {rng.choice(sightings)}. We "
            f"{rng.choice(chores)}. {rng.choice(moods)}"
        )
    return "\n\n".join(paragraphs) + "\n"
