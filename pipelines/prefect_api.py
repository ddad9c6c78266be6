"""A Prefect API for the command line that survives the terminal's Ctrl-C.

Without a configured server, Prefect starts a temporary one as a child process in the
same process group as the command. Ctrl-C then reaches the server too: it died while the
training loop was still saving its checkpoint, and the flow, unable to report, hung for
minutes. So commands that run flows start that local server themselves, in a session of
its own (the terminal's Ctrl-C never reaches it), point Prefect at it for the duration of
the command, and stop it afterwards. A server you configured (`PREFECT_API_URL`, or a test
harness) is used as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.run_lock import exclusive
from pipelines.services import answers, free_port, spawn, wait_until_up
from pipelines.workspace import workspace_dir

START_TIMEOUT_S = 120.0  # a first start migrates a new database: slow on a busy laptop


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the URL of the Prefect API flows in this block report to."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = workspace_dir() / "logs" / "prefect-api.log"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-ui", "--no-services"]
    process: subprocess.Popen | None = None
    try:
        # Two commands started at once in a new workspace would both create the tables of
        # Prefect's database, and one server would die of it: servers start one at a time.
        with exclusive(_start_lock()):
            process = spawn(command, log, os.environ, detached=True, dies_with_parent=True)
            _current.append(process)
            wait_until_up(
                "Prefect's local API",
                lambda: answers(f"{url}/health"),
                process,
                log,
                START_TIMEOUT_S,
            )
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_pending_logs()
    finally:
        if process is not None:
            _stop(process)
            _current.remove(process)


def _start_lock() -> Path:
    """Beside Prefect's database (in PREFECT_HOME, the workspace's `prefect/` folder)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()) / "server-start.lock"


_current: list[subprocess.Popen] = []  # the server this process started, while it runs


def stop_current() -> None:
    """Stop the server this process started, if any (for a process about to exit hard)."""
    for process in list(_current):
        _stop(process, timeout=3.0)


def _send_pending_logs() -> None:
    """Send the flow runs' last log lines to the server while it is still there (Prefect
    sends them in batches, in the background)."""
    from prefect.logging.handlers import APILogWorker

    # Bounded; a lost log line (or a Ctrl-C meanwhile) must not hide the run's own result.
    with contextlib.suppress(BaseException):
        APILogWorker.drain_all(timeout=5)


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the server and whatever it started (its whole session). A second Ctrl-C while
    it stops must not leave it running on its own, so Ctrl-C waits meanwhile."""
    if process.poll() is not None:
        return
    in_main = threading.current_thread() is threading.main_thread()  # signals: main only
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
