"""A fault in the middle of voting: the comparison page's PostgreSQL restarts while
annotators vote. Every vote the page answered 303 (stored) must be in the database.

The test starts a PostgreSQL of its own (initdb into a temporary folder, on a free
loopback port), never the shared one other tests use, since it restarts it."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.comparison_page_clients import choice_for, form_fields, running_page
from benchmarks.throwaway_postgres import ThrowawayPostgres, throwaway_postgres
from tasks.preferences.store import Annotator, Vote, open_database
from tests.tasks.preferences.conftest import ADMIN_TOKEN, make_comparisons

ANNOTATORS = 4
ITEMS = 30


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(throwaway_postgres())
        except (subprocess.SubprocessError, OSError, LookupError) as error:
            pytest.skip(f"cannot start a PostgreSQL of this test's own: {error}")
        yield server


def annotate(url: str, token: str, name: str, until: float, answered: dict, failures: list) -> None:
    """Vote on every item as a person would, trying again when the page fails (a 5xx or a
    dropped connection) until `until`. `answered[(name, item)]` = the choice of each vote
    the page answered 303; `failures` gets each answer that was not a success."""
    with httpx.Client(base_url=url, trust_env=False, timeout=30.0) as client:
        assert client.get(f"/join/{token}").status_code == 303
        while time.monotonic() < until:
            try:
                judge = client.get("/judge")
                if judge.status_code != 200:  # the page could not read the database
                    failures.append(judge.status_code)
                    time.sleep(0.2)
                    continue
                fields = form_fields(judge.text)
                if not fields:
                    return  # all done
                choice = choice_for(name, len(answered))
                response = client.post("/vote", data={**fields, "choice": choice})
                if response.status_code == 303:
                    answered[(name, int(fields["item_id"]))] = choice
                else:
                    failures.append(response.status_code)
                    time.sleep(0.2)
            except httpx.HTTPError as error:
                failures.append(type(error).__name__)
                time.sleep(0.2)
            time.sleep(0.05)  # a little slower than a person, to span the restart


@pytest.mark.slow
def test_every_vote_answered_303_is_stored_when_postgresql_restarts_during_voting(
    postgres, tmp_path
):
    names = tuple(f"annotator-{n}" for n in range(ANNOTATORS))
    comparisons = make_comparisons(
        postgres.url, prompts=ITEMS, annotators=names, repeat_fraction=0, gold_fraction=0
    )
    answered: dict[tuple[str, int], str] = {}
    failures: list[int | str] = []
    with running_page(postgres.url, tmp_path / "page", ADMIN_TOKEN) as page:
        until = time.monotonic() + 60
        threads = [
            threading.Thread(target=annotate, args=(page, token, name, until, answered, failures))
            for name, token in comparisons.tokens.items()
        ]
        for thread in threads:
            thread.start()
        while len(answered) < 10:  # voting is under way
            time.sleep(0.05)
        postgres.stop()
        before = len(answered)
        time.sleep(2)
        postgres.start()
        for thread in threads:
            thread.join()

    engine = open_database(postgres.url)
    with Session(engine) as session:
        rows = session.execute(
            select(Annotator.name, Vote.item_id, Vote.choice).join(Annotator)
        ).all()
    engine.dispose()
    stored = {(name, item): choice for name, item, choice in rows}
    print(f"\n{len(answered)} votes answered 303; during the restart: {Counter(failures)}")
    assert failures  # the restart was felt: some answers during it were errors
    # ...each one "unavailable, try again" (503), never a 500: nothing broke, nothing stored.
    assert 503 in failures and 500 not in failures
    assert len(answered) > before  # votes were answered after the restart too
    assert len(answered) == ANNOTATORS * ITEMS  # every annotator got through every item
    assert {key: stored.get(key) for key in answered} == answered  # each 303 is stored
    assert len(stored) == len(answered)  # and nothing unanswered was counted
