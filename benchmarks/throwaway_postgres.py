"""A PostgreSQL cluster of one's own, made in a temporary folder and thrown away after:
for the benchmark that runs the comparison page on PostgreSQL and for the test that
restarts PostgreSQL during voting (which must never restart the shared one other tests
use).

`initdb` makes the cluster and `pg_ctl` runs it on a free loopback port, both as the
`postgres` user (PostgreSQL refuses to run as root); trust authentication is enough, since
only this machine can connect (it listens on 127.0.0.1 and a socket in its own folder).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.services import free_port

NEEDED_PROGRAMS = ("initdb", "pg_ctl", "runuser")


def missing_programs() -> list[str]:
    """The programs a throw-away cluster needs that are not on PATH (empty: it can run)."""
    return [name for name in NEEDED_PROGRAMS if shutil.which(name) is None]


class ThrowawayPostgres:
    """One cluster: `create()`, then `start()` / `stop()` as often as wanted, `remove()`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="gpt2lab-pg-"))
        self.data, self.log = self.folder / "data", self.folder / "server.log"
        self.port = free_port()
        self.url = self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` in this cluster (psycopg 3, user postgres)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def create(self) -> None:
        shutil.chown(self.folder, "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new empty database `name`; returns its URL."""
        self._as_postgres(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name
        )
        return self.database_url(name)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started cluster, stopped and deleted on the way out. Raises OSError,
    subprocess.SubprocessError or LookupError (no `postgres` user) when one cannot be made:
    the caller decides whether that is a skip or a failure."""
    if missing := missing_programs():
        raise OSError(f"not installed: {', '.join(missing)}")
    server = ThrowawayPostgres()
    try:
        server.create()
        server.start()
    except BaseException:
        server.remove()
        raise
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.remove()
