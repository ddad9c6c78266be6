"""One run at a time per output folder, and one first-time setup of the MLflow store.

Two runs writing the same folder corrupt each other without a word: two `gpt2lab demo`
in one workspace once built a corpus from half the documents and trained on it. So a run
takes a lock on its output folder before it writes there, and a second run refuses at
once, naming the first (pid, command, start time).

The lock is `flock(2)` on a file beside the folder (`<folder>.lock`, never inside it: some
folders must start empty). The kernel lets go of it when the holding process ends, however
it ends (kill -9 included), so a lock left by a dead process is simply taken over: the
file stays, the lock does not. The file holds the holder's description, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from model.errors import Gpt2labError


class FolderInUseError(Gpt2labError):
    """Another live process holds the lock on a folder this run would write."""


def lock_path(folder: Path) -> Path:
    """The lock file of `folder`: `<folder>.lock`, beside it."""
    folder = Path(folder).resolve()
    return folder.with_name(folder.name + ".lock")


def _command() -> str:
    """This process's command line as a person typed it (`gpt2lab demo`, not a path)."""
    if not sys.argv or not sys.argv[0]:
        return "python"
    program = Path(sys.argv[0]).name
    if program in ("gpt2lab", "__main__.py"):  # the console script, or python -m pipelines.cli
        program = "gpt2lab"
    return " ".join([program, *sys.argv[1:]])


def _holder() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']}, `{holder['command']}`, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the lock on `folder` for the block; FolderInUseError at once if another
    process holds it. Taken again by the same process, it is simply held (nested flows)."""
    path = lock_path(folder)
    if path in _held:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderInUseError(
                f"{Path(folder)} is being written by another run ({_describe(path)}); "
                "wait for it to end, or give this run another name or output folder"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(_holder()).encode(), 0)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            os.ftruncate(descriptor, 0)  # no stale description left for the next reader
    finally:
        os.close(descriptor)  # closing lets go of the lock


_held: set[Path] = set()  # lock files this process holds (flock is per open file)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on `path` for a short piece of work that two
    processes must not do at once (creating a database's tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
