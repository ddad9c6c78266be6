"""Ctrl-C and SIGTERM: stop at a safe point, say where in one line, and resume later.

The training loop already stops between two steps on SIGINT or SIGTERM, after saving a
checkpoint (`tasks/train/loop.py`). The flows then raise `RunInterrupted`, a
KeyboardInterrupt that says where the run stopped: every MLflow run it passes through
ends KILLED (not FINISHED: it did not finish), no later stage starts, and the command
prints that one line and how to resume. SIGTERM (a scheduler, `kill`) takes the same path
as Ctrl-C.
"""

from __future__ import annotations

import signal


class RunInterrupted(KeyboardInterrupt):
    """A run stopped at a safe point by Ctrl-C or SIGTERM; the message says where
    ("stopped at step 124 of pretrain")."""


def sigterm_as_ctrl_c() -> None:
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does, so that both stop a command
    the same way (Python's default for SIGTERM ends the process with no clean-up)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def where_stopped(error: KeyboardInterrupt) -> str:
    """What to tell the person: the run's own words, or "stopped" for a bare Ctrl-C."""
    return str(error) or "stopped"
