"""Starting local servers (the comparison page, the MLflow UI, a Prefect server) as child
processes, and waiting until they answer. Every one binds to 127.0.0.1 by default."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now at `host`. Another process could take it before the
    server binds it: a caller that cannot afford that retries with a new port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def answers(url: str, check: Callable[[httpx.Response], bool] = lambda r: r.is_success) -> bool:
    """Whether an HTTP GET of `url` answers (and passes `check`); never uses a proxy."""
    try:
        return check(httpx.get(url, timeout=2.0, trust_env=False))
    except (httpx.HTTPError, ValueError):
        return False


def spawn(
    command: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    detached: bool = False,
    dies_with_parent: bool = False,
) -> subprocess.Popen:
    """Start `command` with its output appended to `log_path`. A detached process has its
    own session: it outlives the process that started it (and its Ctrl-C). One that
    `dies_with_parent` gets SIGTERM from the kernel when its parent ends, however it ends
    (kill -9 included; Linux only), so a helper server is never left running alone."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            start_new_session=detached,
            preexec_fn=_terminate_with_parent if dies_with_parent else None,
        )


def _terminate_with_parent() -> None:
    """In the child, before it runs: ask Linux for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_up(
    what: str, is_up: Callable[[], bool], process: subprocess.Popen, log_path: Path, timeout: float
) -> None:
    """Wait until `is_up()`; a process that exits first, or a timeout, is an error that
    quotes the last line of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_up():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} did not start: {_last_line(log_path)} (see {log_path})")
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s (see {log_path})")


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else "no output"
