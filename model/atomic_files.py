"""Writing files and folders so that a crash never leaves a half-written one.

The trick is the same for both: write everything under a temporary name in the same
folder, then rename it into place. A rename within one file system is atomic, so a reader
(or a run started after a crash) sees either the old version or the new one, never a mix.

Imports nothing of ours (and not PyTorch), so every layer may use it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

Result = TypeVar("Result")


def write_folder_atomically(
    folder: str | os.PathLike[str], write: Callable[[Path], Result]
) -> Result:
    """Run `write(tmp_folder)`, then move the result to `folder` in one step.

    An existing `folder` is replaced: it is renamed aside first and removed only once the
    new one is in place. Returns what `write` returned.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        result = write(tmp)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def write_file_atomically(
    path: str | os.PathLike[str], write: str | bytes | Callable[[IO[Any]], Any]
) -> None:
    """Write `path` from a text, bytes, or a function given the open (text) file.

    The data is flushed to disk before the rename, so after a power cut the file holds
    either its old contents or the complete new ones.
    """
    path = Path(path)
    binary = isinstance(write, bytes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=None if binary else "\n") as handle:
            if callable(write):
                write(handle)
            else:
                handle.write(write)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
