"""Files only their owner may read: database files and the secrets kept beside them.

A SQLite database holds votes, invite hashes and cached results; under the usual umask
(022) a new file is readable by every user on the machine. Creating the file 0600 before
SQLite (or MLflow) opens it is enough for its `-wal` and `-shm` files too: SQLite gives
those the mode of the database file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_MODE = 0o600


def make_private_file(path: Path) -> Path:
    """Create `path` empty with mode 0600 if missing, else tighten its mode to 0600 (and
    that of its `-wal` / `-shm` files, which an older run may have left readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists():
            each.chmod(PRIVATE_MODE)
    return path


def sqlite_file(url: str) -> Path | None:
    """The file a `sqlite:///...` URL names; None for other databases and in-memory ones."""
    from sqlalchemy.engine import make_url  # here: the plain-sqlite3 callers never need it

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def private_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in `path` (mode 0600), made the first time it is asked for.
    Two processes racing to make it agree: the loser reads the winner's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(nbytes) + "\n")
    secret = path.read_text().strip()
    if not secret:  # the winner has not written yet, or an empty file was left: say so
        raise ValueError(f"{path}: the secret file is empty; delete it and start again")
    return secret
