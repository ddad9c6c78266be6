"""The real comparison page (its own process, SQLite) under 50 annotators voting at once.

Every annotator votes on all 40 items of the batch with no pause between votes, far
harder than people clicking, to shake out lost votes, "database is locked" and double
counts. The latency figures are printed, never asserted (they depend on the machine);
`benchmarks/bench_comparison_page.py` measures them properly.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.comparison_page_clients import latency_summary, running_page, vote_through_page
from tasks.preferences.store import Annotator, Vote, open_database

from .conftest import ADMIN_TOKEN, make_comparisons

ANNOTATORS = 50
ITEMS = 40  # 40 prompts x one pair of models, no repeats and no gold items


@pytest.mark.slow
def test_fifty_annotators_voting_at_once_lose_no_vote_and_count_none_twice(tmp_path):
    url = f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"
    names = tuple(f"annotator-{n:02d}" for n in range(ANNOTATORS))
    comparisons = make_comparisons(
        url, prompts=ITEMS, annotators=names, repeat_fraction=0, gold_fraction=0
    )

    with running_page(url, tmp_path / "page", ADMIN_TOKEN) as page:
        runs = vote_through_page(page, comparisons.tokens)

    assert [run.error for run in runs if run.error] == []
    assert all(len(run.sent) == ITEMS for run in runs)  # each reached the "all done" page
    assert {status for run in runs for status in run.statuses} == {303}
    seconds = [s for run in runs for s in run.vote_seconds]
    figures = ", ".join(f"{name} {ms:.0f} ms" for name, ms in latency_summary(seconds).items())
    print(f"\n{len(seconds)} vote POSTs from {ANNOTATORS} clients at once: {figures}")

    engine = open_database(url)
    with Session(engine) as session:
        rows = session.execute(
            select(Annotator.name, Vote.item_id, Vote.choice).join(Annotator)
        ).all()
        distinct = session.scalar(
            select(func.count()).select_from(
                select(Vote.item_id, Vote.annotator_id).distinct().subquery()
            )
        )
    engine.dispose()
    assert len(rows) == distinct == ANNOTATORS * ITEMS == 2000
    stored = {(name, item): choice for name, item, choice in rows}
    sent = {(run.name, item): choice for run in runs for item, choice in run.sent.items()}
    assert stored == sent  # every vote landed, with the choice that was sent
