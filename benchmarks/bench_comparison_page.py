"""The comparison page under load: 50 annotators voting at once, 2,000 votes (target:
vote p95 < 200 ms), on SQLite in one process (the default) and on PostgreSQL in several.

Workload: one batch of 40 items (40 prompts x one pair of models, no repeats, no gold),
50 invited annotators, each an HTTP client in its own thread with its own cookies and
keep-alive connection. All join, then all vote at once: POST /vote, follow the 303 to
GET /judge for the next item's form, and so on, with no pause, until each has judged all
40 items. That is a stress test: a person takes seconds per judgment, so 50 people send a
few votes per second, where these 50 clients send as many as the server can take. The
latency of a vote is then mostly the wait in line behind the other 49 clients' requests:
p95 < 200 ms with no pause asks the server to finish a vote and a page in about 8 ms, and
votes/s is the page's capacity on this machine.

Ours: the real page, started as the preference flow starts it
(`python -m pipelines.comparison_server <url> 127.0.0.1 <port> <workers>`, the same
server `gpt2lab serve-comparisons --workers N` runs), on a new database each run, in these
setups:
- SQLite, 1 process: the default, what `make demo` and a class of annotators use;
- SQLite, 2 processes: what SQLite allows (one writer at a time, whatever the processes);
- PostgreSQL, 1, 2 and 4 processes: the way to more capacity. The benchmark makes a
  PostgreSQL cluster of its own (initdb, as the `postgres` user, on a free loopback port)
  and a new database in it for each run; where it cannot (no PostgreSQL installed), those
  rows are skipped with the reason.

Peer (a floor, not a rival; the issue names none): a bare FastAPI app on the same uvicorn
settings (one process, sync handlers in a thread pool of the page's size, no access log),
speaking the same protocol to the same clients: /join sets a plain cookie, GET /judge
answers a small form for the next item, POST /vote runs one `INSERT` on a SQLite file
(WAL mode, writes serialised by a lock) and answers 303. No ORM, templates, signed
sessions, CSRF check or security headers: what is left is the HTTP server and SQLite, the
cost every request pays whatever the page does.

Figures: p50/p95/p99/max of the vote POSTs' round trips, p50/p95 of the page loads after
each vote, and votes/s (2,000 over the wall time from the first join to the last vote);
each the median over the repeats, the setups and the floor taking turns. The clients, the
server processes and PostgreSQL all share this machine's cores (on 2 vCPUs the clients
take about a quarter of the CPU), so the figures are the page's as seen from the same
machine, not from a remote browser; more processes pay off on a machine with more cores.

Only 127.0.0.1 is used: the servers bind it, the clients ignore proxy settings.

    python -m benchmarks.bench_comparison_page [--repeats 3] [--annotators 50] [--items 40]
        [--postgres-workers 1,2,4]
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks.comparison_page_clients import (
    HOST,
    AnnotatorRun,
    latency_summary,
    running_page,
    running_server,
    vote_through_page,
)
from benchmarks.throwaway_postgres import ThrowawayPostgres, throwaway_postgres
from tasks.preferences.batches import BatchSpec, create_batch
from tasks.preferences.store import Vote, invite, open_database
from tasks.preferences.web import REQUEST_THREADS

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_P95_MS = 200.0
ADMIN_TOKEN = "bench-comparison-page-admin-token"
# About 80 words per continuation, in the range of a GPT-2 sample a person would judge.
WORDS = [
    "the",
    "model",
    "wrote",
    "this",
    "continuation",
    "of",
    "the",
    "prompt",
    "with",
    "care",
    "and",
    "then",
    "said",
    "more",
]


def sample_texts(model: str, prompts: list[str], seed: int) -> list[str]:
    """Stands in for the models: a different ~80-word text for each model and prompt."""
    return [
        f"{model} {n}: " + " ".join(WORDS[(n + i) % len(WORDS)] for i in range(80))
        for n, _ in enumerate(prompts)
    ]


def make_batch(database_url: str, annotators: int, items: int) -> dict[str, str]:
    """A batch of exactly `items` items and `annotators` invitees; name -> invite token."""
    engine = open_database(database_url)
    with Session(engine) as session, session.begin():
        spec = BatchSpec(
            "bench",
            ["base", "tuned"],
            [f"Prompt {n}:" for n in range(items)],
            repeat_fraction=0,
            gold_fraction=0,
        )
        batch = create_batch(session, spec, sample_texts)
        tokens = {
            f"annotator-{n:02d}": invite(session, batch, f"annotator-{n:02d}")
            for n in range(annotators)
        }
    engine.dispose()
    return tokens


# ---------------------------------------------------------------------------------------
# The floor: a bare FastAPI app, same protocol, one SQLite statement per request


def serve_floor(db_path: str, port: int, items: int) -> None:
    """Run the floor app (see the module doc) until stopped; in its own process."""
    import threading
    from contextlib import asynccontextmanager

    import anyio.to_thread
    import uvicorn
    from fastapi import Cookie, FastAPI, Form
    from fastapi.responses import HTMLResponse, RedirectResponse

    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS votes (item INTEGER, who TEXT, choice TEXT, UNIQUE (item, who))"
    )
    lock = threading.Lock()  # one connection, one statement at a time

    @asynccontextmanager
    async def same_thread_pool(_app):  # the page's pool size, so both queue alike
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        yield

    app = FastAPI(lifespan=same_thread_pool)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/join/{token}")
    def join(token: str):
        response = RedirectResponse("/judge", status_code=303)
        response.set_cookie("who", token)
        return response

    @app.get("/judge", response_class=HTMLResponse)
    def judge(who: str = Cookie("")):
        with lock:
            done = db.execute("SELECT count(*) FROM votes WHERE who = ?", (who,)).fetchone()[0]
        if done >= items:
            return "<p>All done</p>"
        return (
            f'<form method="post" action="/vote"><input type="hidden" name="item_id" '
            f'value="{done + 1}"><input type="hidden" name="csrf" value="-">'
            "</form>"
        )

    @app.post("/vote")
    def vote(
        item_id: str = Form(""), choice: str = Form(""), csrf: str = Form(""), who: str = Cookie("")
    ):
        with lock:
            db.execute("INSERT OR IGNORE INTO votes VALUES (?, ?, ?)", (int(item_id), who, choice))
        return RedirectResponse("/judge", status_code=303)

    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def floor_is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------------------
# One run of each


def measure(runs: list[AnnotatorRun], seconds: float) -> dict[str, float]:
    votes = latency_summary([s for run in runs for s in run.vote_seconds])
    pages = latency_summary([s for run in runs for s in run.judge_seconds])
    sent = sum(len(run.sent) for run in runs)
    return {
        **{f"vote {k}": v for k, v in votes.items()},
        "page p50": pages["p50"],
        "page p95": pages["p95"],
        "votes/s": sent / seconds,
    }


def check(name: str, runs: list[AnnotatorRun], stored: int, expected: int) -> list[str]:
    """What went wrong in a run, if anything: errors, non-303 answers, lost votes."""
    problems = [f"{name}: {run.name}: {run.error}" for run in runs if run.error]
    statuses = {status for run in runs for status in run.statuses}
    if statuses != {303}:
        problems.append(f"{name}: vote answers {sorted(statuses)}, expected only 303")
    if stored != expected:
        problems.append(f"{name}: {stored} votes stored, expected {expected}")
    return problems


@dataclass(frozen=True)
class Setup:
    """One way of running the page: its database and its number of processes."""

    database: str  # "sqlite" or "postgresql"
    workers: int

    @property
    def label(self) -> str:
        processes = "process" if self.workers == 1 else "processes"
        name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[self.database]
        return f"ours, {name}, {self.workers} {processes}"


def run_ours(
    setup: Setup, folder: Path, annotators: int, items: int, postgres: ThrowawayPostgres | None
) -> tuple[dict, list[str]]:
    if setup.database == "sqlite":
        url = f"sqlite:///{(folder / 'preferences.db').as_posix()}"
    else:
        assert postgres is not None
        url = postgres.create_database(f"bench_{folder.name.rsplit('-', 1)[-1].lower()}")
    tokens = make_batch(url, annotators, items)
    with running_page(url, folder / "page", ADMIN_TOKEN, workers=setup.workers) as page:
        started = time.perf_counter()
        runs = vote_through_page(page, tokens)
        seconds = time.perf_counter() - started
    engine = open_database(url)
    with Session(engine) as session:
        stored = session.scalar(select(func.count()).select_from(Vote)) or 0
    engine.dispose()
    return measure(runs, seconds), check(setup.label, runs, stored, annotators * items)


def run_floor(folder: Path, annotators: int, items: int) -> tuple[dict, list[str]]:
    db_path = str(folder / "floor.db")
    tokens = {f"annotator-{n:02d}": f"token-{n:02d}" for n in range(annotators)}

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "benchmarks.bench_comparison_page",
            "--serve-floor",
            db_path,
            str(port),
            str(items),
        ]

    # The child runs in its own folder: PYTHONPATH lets it find this module there.
    env = {"PYTHONPATH": str(REPO_ROOT)}
    with running_server(command, folder / "floor", env=env, is_up=floor_is_up) as floor:
        started = time.perf_counter()
        runs = vote_through_page(floor, tokens)
        seconds = time.perf_counter() - started
    with sqlite3.connect(db_path) as db:
        stored = db.execute("SELECT count(*) FROM votes").fetchone()[0]
    return measure(runs, seconds), check("floor", runs, stored, annotators * items)


FLOOR = "floor, bare FastAPI, SQLite"
COLUMNS = ("vote p50", "vote p95", "vote p99", "vote max", "page p50", "page p95")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--annotators", type=int, default=50, help="clients voting at once")
    parser.add_argument("--items", type=int, default=40, help="items each one judges")
    parser.add_argument(
        "--postgres-workers", default="1,2,4", help="PostgreSQL setups: processes, comma-separated"
    )
    # The floor's own process is this module again, with this hidden option.
    parser.add_argument(
        "--serve-floor", nargs=3, metavar=("DB", "PORT", "ITEMS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_floor:
        db_path, port, items = args.serve_floor
        serve_floor(db_path, int(port), int(items))
        return 0

    total = args.annotators * args.items
    print(
        f"\nComparison page under load: {args.annotators} clients at once, {args.items} "
        f"votes each ({total:,} votes), loopback; median of {args.repeats} runs, the setups "
        "and the floor taking turns, a new database each run"
    )
    setups = [Setup("sqlite", 1), Setup("sqlite", 2)]
    with contextlib.ExitStack() as stack:
        try:
            postgres = stack.enter_context(throwaway_postgres())
        except (OSError, subprocess.SubprocessError, LookupError) as error:
            postgres = None
            print(f"  PostgreSQL setups skipped: cannot start a cluster here ({error})")
        if postgres is not None:
            setups += [Setup("postgresql", int(n)) for n in args.postgres_workers.split(",")]
        results, problems = _run_all(setups, postgres, args)
    _print_medians(results)
    for problem in problems:
        print(f"  WARNING: {problem}")
    # A missed target is a finding, printed above; only a broken run is a failure.
    return 1 if problems else 0


def _run_all(
    setups: list[Setup], postgres: ThrowawayPostgres | None, args: argparse.Namespace
) -> tuple[dict[str, list[dict]], list[str]]:
    """Every setup and the floor, `args.repeats` times in turn; figures by label."""
    results: dict[str, list[dict]] = {setup.label: [] for setup in setups} | {FLOOR: []}
    problems: list[str] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for setup in [*setups, None]:
            label = setup.label if setup else FLOOR
            with tempfile.TemporaryDirectory(prefix="bench-comparison-page-") as folder:
                if setup is None:
                    figures, found = run_floor(Path(folder), args.annotators, args.items)
                else:
                    figures, found = run_ours(
                        setup, Path(folder), args.annotators, args.items, postgres
                    )
            results[label].append(figures)
            problems += found
            print(
                f"  run {repeat + 1} {label:30}: "
                + ", ".join(f"{key} {value:.0f}" for key, value in figures.items())
            )
    print(f"  (the runs took {time.perf_counter() - started:.0f} s)")
    return results, problems


def _print_medians(results: dict[str, list[dict]]) -> None:
    medians = {
        label: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for label, runs in results.items()
    }
    print(
        f"\n  {'median of runs':33}"
        + "".join(f"{column:>11}" for column in COLUMNS)
        + f"{'votes/s':>9}  target p95 < {TARGET_P95_MS:.0f} ms"
    )
    floor = medians[FLOOR]
    for label, figures in medians.items():
        verdict = (
            "" if label == FLOOR else "meets" if figures["vote p95"] < TARGET_P95_MS else "MISSES"
        )
        print(
            f"  {label:33}"
            + "".join(f"{figures[column]:8.0f} ms" for column in COLUMNS)
            + f"{figures['votes/s']:9.0f}  {verdict}"
        )
    for label, figures in medians.items():
        if label != FLOOR:
            print(
                f"  {label}: vote p95 {figures['vote p95'] / floor['vote p95']:.1f}x the "
                f"floor's, {figures['votes/s'] / floor['votes/s']:.2f}x its votes/s"
            )


if __name__ == "__main__":
    raise SystemExit(main())
