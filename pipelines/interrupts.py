"""Ctrl-C and SIGTERM: stop at a safe point, say where in one line, and resume later.

The training loop stops between two steps on SIGINT or SIGTERM, after saving a checkpoint
(`tasks/train/loop.py`). The flows then raise `RunInterrupted`, a KeyboardInterrupt that
says where the run stopped: every MLflow run it passes through ends KILLED (it did not
finish), no later stage starts, and the command prints that one line and how to resume.

Elsewhere (fetching a corpus shard, encoding), the work runs in worker threads that a
KeyboardInterrupt in the main thread does not stop, and Prefect waits for them. There every
write is already crash-safe (a killed corpus or encode run resumes exactly: tests kill them
with SIGKILL), so the command does not wait for the batch to finish: `GRACE_S` after the
first Ctrl-C it marks its open MLflow runs KILLED, prints the same one line and exits.
SIGTERM (a scheduler, `kill`) takes the same path as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

GRACE_S = 5.0  # after Ctrl-C, how long the work gets to reach its own safe point


class RunInterrupted(KeyboardInterrupt):
    """A run stopped at a safe point by Ctrl-C or SIGTERM; the message says where
    ("stopped at step 124 of pretrain")."""


def where_stopped(error: KeyboardInterrupt) -> str:
    """What to tell the person: the run's own words, or where it was for a bare Ctrl-C."""
    return str(error) or (f"stopped during {current_stage}" if current_stage else "stopped")


# What the process is doing, for the line printed when it is stopped the hard way.
current_stage: str | None = None
open_runs: list[str] = []  # MLflow runs now open in this process (tracked_run keeps it)


def stop_on_interrupt(finish: Callable[[str], None]) -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt (the way to a safe stop) and, if the
    process is still running `GRACE_S` later, call `finish(where)`: it must end the process.
    A second Ctrl-C calls it at once."""
    interrupted = threading.Event()

    def hard_stop(delay: float) -> None:
        time.sleep(delay)
        finish(f"stopped during {current_stage}" if current_stage else "stopped")

    def on_signal(signum: int, frame) -> None:
        if interrupted.is_set():
            hard_stop(0.0)
        interrupted.set()
        threading.Thread(target=hard_stop, args=(GRACE_S,), daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def end_now(message: str, cleanups: list[Callable[[], None]]) -> None:
    """Run `cleanups` (each bounded, failures ignored), print `message`, exit with 130."""
    for cleanup in cleanups:
        with contextlib.suppress(Exception):  # nothing may keep the process from ending
            cleanup()
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)  # the shell's code for Ctrl-C
