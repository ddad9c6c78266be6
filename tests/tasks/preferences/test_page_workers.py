"""The comparison page in several worker processes (`serve-comparisons --workers 2`), on
SQLite and on PostgreSQL: a session begun in one process is honoured by the other, both
processes serve, and no vote is lost or counted twice.

Every request here opens a new connection, so the kernel hands each to whichever worker
takes it: an annotator's join, pages and votes land on both processes, which only works
when they sign and check cookies with the same key. Each worker's CPU time is read before
and after the votes to show that both served.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks.comparison_page_clients import choice_for, form_fields, running_page
from tasks.preferences.store import Annotator, Vote, open_database

from .conftest import ADMIN_TOKEN, make_comparisons

WORKERS = 2
ANNOTATORS = 6
ITEMS = 15


def _workers_of(pid: int) -> list[int]:
    """The worker processes uvicorn started under `pid` (not multiprocessing's resource
    tracker, its other child)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(child) for child in path.read_text().split()] if path.exists() else []
    return [
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _page_processes(port: str) -> list[int]:
    """The worker processes of the page listening on `port`: the children of the process
    started as `python -m pipelines.comparison_server <url> 127.0.0.1 <port> ...`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pipelines.comparison_server" in argv and port.encode() in argv:
            return _workers_of(int(entry.name))
    return []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settled_workers(port: str, timeout: float = 60.0) -> list[int]:
    """The workers, once all of them have started: their CPU time stops growing (a worker
    that is still importing its modules would otherwise look like one serving votes)."""
    deadline = time.monotonic() + timeout
    before: dict[int, float] = {}
    while time.monotonic() < deadline:
        workers = _page_processes(port)
        now = {pid: _cpu_seconds(pid) for pid in workers}
        if len(workers) == WORKERS and now == before:
            return workers
        before = now
        time.sleep(1.0)
    raise AssertionError(f"the page's {WORKERS} workers did not settle: {before}")


def _annotate(url: str, name: str, token: str, sent: dict, statuses: list) -> None:
    """Join and vote on every item, each request on a new connection."""
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, trust_env=False, timeout=60.0, limits=no_keep_alive) as client:
        joined = client.get(f"/join/{token}")
        statuses.append(joined.status_code)
        fields = form_fields(client.get("/judge").text)
        while fields:
            choice = choice_for(name, len(sent))
            response = client.post("/vote", data={**fields, "choice": choice})
            statuses.append(response.status_code)
            if response.status_code != 303:
                return
            sent[(name, int(fields["item_id"]))] = choice
            fields = form_fields(client.get("/judge").text)


@pytest.mark.slow
def test_worker_processes_share_sessions_and_lose_no_vote(database_url, tmp_path):
    names = tuple(f"annotator-{n}" for n in range(ANNOTATORS))
    comparisons = make_comparisons(
        database_url, prompts=ITEMS, annotators=names, repeat_fraction=0, gold_fraction=0
    )
    sent: dict[tuple[str, int], str] = {}
    statuses: list[int] = []
    with running_page(database_url, tmp_path / "page", ADMIN_TOKEN, workers=WORKERS) as page:
        port = page.rsplit(":", 1)[1]
        workers = _settled_workers(port)
        cpu_before = {pid: _cpu_seconds(pid) for pid in workers}
        threads = [
            threading.Thread(target=_annotate, args=(page, name, token, sent, statuses))
            for name, token in comparisons.tokens.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu_used = {pid: _cpu_seconds(pid) - cpu_before[pid] for pid in workers}

    assert set(statuses) == {303}  # every join and vote, whichever worker took it
    assert len(sent) == ANNOTATORS * ITEMS
    assert all(seconds > 0 for seconds in cpu_used.values()), cpu_used  # both served
    engine = open_database(database_url)
    with Session(engine) as session:
        rows = session.execute(
            select(Annotator.name, Vote.item_id, Vote.choice).join(Annotator)
        ).all()
    engine.dispose()
    assert {(name, item): choice for name, item, choice in rows} == sent
    assert len(rows) == len(sent)  # each once


def test_several_processes_on_sqlite_are_warned_about_and_none_below_one_allowed(tmp_path):
    from pipelines.comparison_server import serve, workers_warning

    sqlite_url = f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"
    postgres_url = "postgresql+psycopg://user@127.0.0.1:5432/votes"
    assert workers_warning(sqlite_url, 1) is None
    assert workers_warning(postgres_url, 4) is None
    warning = workers_warning(sqlite_url, 2)
    assert "preferences.db" in warning and "PostgreSQL" in warning
    with pytest.raises(ValueError, match="--workers must be 1 or more, not 0"):
        serve(sqlite_url, workers=0)
