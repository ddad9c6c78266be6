"""The real comparison page in a child process, and clients that vote through it.

`running_page` starts `python -m pipelines.comparison_server` exactly as the
preference flow does (uvicorn, one process, its own database connections), so the browser
test and the load test see what an annotator sees, not FastAPI's in-process TestClient.
`vote_through_page` plays annotators: join with the invite link, then vote on every item
the page hands out, as a browser following the page's redirects would. The load test and
`benchmarks/bench_comparison_page.py` share both.

Everything stays on this machine: the page binds 127.0.0.1 and every client here ignores
proxy settings (`trust_env=False`).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipelines.comparison_server import ADMIN_TOKEN_ENV, page_is_up
from pipelines.services import free_port

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0  # a cold start on a busy 2-core machine takes a few seconds
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


def _server_environment(workdir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: its own workspace under `workdir`, no proxies, `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(
        {
            "GPT2LAB_HOME": str(workdir / "workspace"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **extra,
        }
    )
    return env


def _start(
    command: Callable[[int], list[str]],
    workdir: Path,
    env: dict[str, str],
    log_path: Path,
    is_up: Callable[[str], bool],
) -> tuple[subprocess.Popen, str]:
    """Start `command(port)` on a free port; returns (process, base URL) once it is up."""
    for _attempt in range(3):
        port = free_port()
        url = f"http://{HOST}:{port}"
        # The log goes to a file, not a pipe: nobody reads a pipe while the test runs, and
        # a full pipe would stall the server.
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                command(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if is_up(url):
                return process, url
            time.sleep(0.1)
        if process.poll() is None:  # still running, yet silent: give up
            _stop(process)
            break
        if "address already in use" not in log_path.read_text(errors="replace"):
            break  # it died for another reason: retrying would only hide it
    raise RuntimeError(f"the server did not start; its output:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()  # uvicorn shuts down cleanly on SIGTERM
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log_path: Path, lines: int = 60) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


@contextmanager
def running_server(
    command: Callable[[int], list[str]],
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    is_up: Callable[[str], bool] = page_is_up,
) -> Iterator[str]:
    """Run `command(port)` on a free loopback port; yields its base URL
    (`http://127.0.0.1:<port>`) once `is_up(url)`, and stops the process afterwards.
    `workdir` holds the child's workspace and its log; when the body fails, the log is
    printed, so pytest shows the server's side of the story (a traceback, "database is
    locked") next to the failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    environment = _server_environment(workdir, env or {})
    process, url = _start(command, workdir, environment, log_path, is_up)
    failed = False
    try:
        yield url
    except BaseException:
        failed = True
        raise
    finally:
        _stop(process)
        if failed:
            print(f"--- the server's output ({log_path}) ---\n{_tail(log_path)}")


@contextmanager
def running_page(
    database_url: str, workdir: Path, admin_token: str, workers: int = 1
) -> Iterator[str]:
    """The comparison page for `database_url`, started as the preference flow starts it
    (`python -m pipelines.comparison_server <url> <host> <port> [<workers>]`, the admin
    token in the environment, not on the command line); yields its base URL."""

    def command(port: int) -> list[str]:
        server = [sys.executable, "-m", "pipelines.comparison_server", database_url, HOST]
        return [*server, str(port), str(workers)]

    with running_server(command, workdir, env={ADMIN_TOKEN_ENV: admin_token}) as url:
        yield url


# ---------------------------------------------------------------------------------------
# Annotators as HTTP clients


def form_fields(page: str) -> dict[str, str]:
    """The vote form's hidden fields (item_id, csrf); empty on the "all done" page."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))


@dataclass
class AnnotatorRun:
    """What one simulated annotator sent and got back."""

    name: str
    sent: dict[int, str] = field(default_factory=dict)  # item id -> the choice posted
    statuses: list[int] = field(default_factory=list)  # of the vote POSTs
    vote_seconds: list[float] = field(default_factory=list)  # each vote POST, round trip
    judge_seconds: list[float] = field(default_factory=list)  # each GET /judge after a vote
    error: str | None = None  # what went wrong, if the run stopped early


def choice_for(name: str, index: int) -> str:
    """A varied but reproducible choice, so the stored votes can be checked one by one."""
    return ("left", "right", "tie", "both_bad")[(len(name) + index) % 4]


def _annotate(url: str, name: str, token: str, start: threading.Barrier) -> AnnotatorRun:
    """One annotator: join, then vote on each item /judge shows until it says done.

    The page carries its session token (csrf) in every form, so it is read from each page,
    as a browser submits it: after every vote the browser follows the 303 back to /judge and
    gets the next item's form, so a realistic annotator costs one GET /judge per vote too.
    """
    run = AnnotatorRun(name)
    # Its own client: its own cookie jar (session) and its own keep-alive connection.
    with httpx.Client(base_url=url, trust_env=False, timeout=120.0) as client:
        try:
            joined = client.get(f"/join/{token}")
            if joined.status_code != 303:
                raise RuntimeError(f"join answered {joined.status_code}")
            start.wait()  # everyone votes at once, not one after another as they join
            fields = form_fields(client.get("/judge").text)
            while fields:
                choice = choice_for(name, len(run.sent))
                started = time.perf_counter()
                response = client.post("/vote", data={**fields, "choice": choice})
                run.vote_seconds.append(time.perf_counter() - started)
                run.statuses.append(response.status_code)
                run.sent[int(fields["item_id"])] = choice
                if response.status_code != 303:
                    raise RuntimeError(
                        f"vote answered {response.status_code}: {response.text[:200]}"
                    )
                started = time.perf_counter()
                page = client.get("/judge")
                run.judge_seconds.append(time.perf_counter() - started)
                fields = form_fields(page.text)
        except Exception as error:  # recorded and reported by the caller, not lost in a thread
            start.abort()  # whoever still waits at the barrier would wait for this one in vain
            run.error = f"{type(error).__name__}: {error}"
        return run


def vote_through_page(url: str, tokens: dict[str, str]) -> list[AnnotatorRun]:
    """Every annotator in `tokens` (name -> invite token) in its own thread, all at once;
    returns each one's record once all have finished."""
    runs: dict[str, AnnotatorRun] = {}
    start = threading.Barrier(len(tokens), timeout=120)

    def annotate(name: str, token: str) -> None:
        runs[name] = _annotate(url, name, token, start)

    threads = [threading.Thread(target=annotate, args=item) for item in tokens.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [runs[name] for name in tokens]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of `seconds`, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50": cuts[49] * 1000,
        "p95": cuts[94] * 1000,
        "p99": cuts[98] * 1000,
        "max": max(seconds) * 1000,
    }
