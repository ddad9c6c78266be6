"""A command at a real terminal (a pseudo-terminal from `pty.fork`), for the tests of what a
person at a terminal sees: Ctrl-C, the chat prompt, progress lines."""

from __future__ import annotations

import os
import re
import select
import signal
import time


def read_terminal(fd: int, until: float, wanted: bytes | None = None) -> bytes:
    """What the terminal `fd` shows until time `until` (monotonic), until it closes, or
    until `wanted` appears in it."""
    out = b""
    while time.monotonic() < until and (wanted is None or wanted not in out):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


def plain(shown: bytes) -> str:
    """Terminal output as text, without colour and cursor codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))


def exit_code(pid: int, timeout: float) -> int | None:
    """The child's exit code once it ends, or None if it runs past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


def kill(pid: int) -> None:
    """Stop the child for good (a test that failed must not leave it running)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    exit_code(pid, 10)
