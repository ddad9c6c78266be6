"""A scripted annotator: a program that judges on the comparison page as a person would,
over HTTP, with a score function for its judgement and a seeded rate of random mistakes.

It goes through the same door as people: it opens its invite link, reads each item off
the page (prompt, left and right text, the form's hidden fields), and posts its choice
with the page's CSRF token and session cookie. So every vote it casts has been shown and
submitted by the real page, and a batch it fills is read back by the same code as one
filled by people. Its annotator name (SCRIPTED_VADER) says what it is wherever the batch
is shown; whoever reports its votes must say that a script, not a person, cast them.

Ziegler et al. (2019) had people pick the best of four continuations; this annotator
picks the better of two by `score` (higher is better), votes "tie" when the scores are
equal, and with probability `mistake_rate` votes left or right at random instead: a
stand-in for the noise of human labels (their labellers agreed with the researchers
about 60 to 90% of the time, depending on the task).
"""

from __future__ import annotations

import html
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from model.errors import Gpt2labError

SCRIPTED_VADER = "scripted-vader"  # the annotator's name when VADER is its judgement

_TEXT = {
    part: re.compile(rf'<div class="text" id="{part}">(.*?)</div>', re.S)
    for part in ("prompt", "left", "right")
}
_HIDDEN = re.compile(r'<input type="hidden" name="(item_id|csrf)" value="([^"]*)">')


class AnnotatorError(Gpt2labError):
    """The page answered something the scripted annotator cannot read."""


@dataclass(frozen=True)
class Screen:
    """One item as the page shows it."""

    item_id: str
    csrf: str
    prompt: str
    left: str
    right: str


@dataclass
class Tally:
    """What the annotator did: votes by choice, and how many were random mistakes."""

    choices: Counter = field(default_factory=Counter)
    mistakes: int = 0

    @property
    def votes(self) -> int:
        return sum(self.choices.values())


def read_screen(page: str, url: str) -> Screen | None:
    """The item on a judging page; None on the page that says every item is judged."""
    hidden = dict(_HIDDEN.findall(page))
    if "item_id" not in hidden:
        if 'id="vote"' in page:
            raise AnnotatorError(f"{url}: a voting form without an item_id")
        return None  # done.html: nothing left to judge
    texts = {}
    for part, pattern in _TEXT.items():
        match = pattern.search(page)
        if match is None:
            raise AnnotatorError(f"{url}: the judging page has no {part} text")
        texts[part] = html.unescape(match.group(1))  # the page escapes what it shows
    return Screen(hidden["item_id"], hidden.get("csrf", ""), **texts)


def choose(
    screen: Screen, score: Callable[[str], float], mistake_rate: float, rng: random.Random
) -> tuple[str, bool]:
    """(choice, whether it was a random mistake): the higher-scoring side, "tie" when the
    scores are equal, or with probability `mistake_rate` a side drawn at random."""
    if rng.random() < mistake_rate:
        return rng.choice(["left", "right"]), True
    left, right = score(screen.left), score(screen.right)
    if left == right:
        return "tie", False
    return ("left" if left > right else "right"), False


def judge_on_page(
    base_url: str,
    token: str,
    score: Callable[[str], float],
    *,
    mistake_rate: float = 0.0,
    seed: int = 0,
    limit: int | None = None,
    on_vote: Callable[[int], None] | None = None,
) -> Tally:
    """Join the page at `base_url` with invite `token` and vote until every item is judged
    (or `limit` votes are cast). `on_vote(n)` is told each time n votes are in."""
    if not 0 <= mistake_rate <= 1:
        raise ValueError(f"mistake_rate must be between 0 and 1, not {mistake_rate}")
    rng = random.Random(seed)
    tally = Tally()
    with httpx.Client(base_url=base_url, follow_redirects=True, timeout=60, trust_env=False) as web:
        response = _ok(web.get(f"/join/{token}"))  # sets the session cookie, shows an item
        while limit is None or tally.votes < limit:
            screen = read_screen(response.text, str(response.url))
            if screen is None:
                break
            choice, mistake = choose(screen, score, mistake_rate, rng)
            form = {"item_id": screen.item_id, "choice": choice, "csrf": screen.csrf}
            response = _ok(web.post("/vote", data=form))  # answers with the next item
            tally.choices[choice] += 1
            tally.mistakes += mistake
            if on_vote is not None:
                on_vote(tally.votes)
    return tally


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise AnnotatorError(
            f"{response.request.method} {response.url}: HTTP {response.status_code}: "
            f"{response.text[:200]}"
        )
    return response
