"""Running the comparison page: in this process (`gpt2lab serve-comparisons`) or as a
background process that outlives the flow that started it (the `preferences` flow).

The page binds to 127.0.0.1 unless told otherwise: it is meant to sit behind a reverse
proxy (with TLS) when annotators are elsewhere, never on an open port by accident. Bound
to any other address, its cookies are Secure (sent over HTTPS only) unless told not to,
and `X-Forwarded-Proto` / `X-Forwarded-For` are believed only from the proxies named.

The admin token comes from `GPT2LAB_ADMIN_TOKEN`, or else from
`<workspace>/preferences-admin-token`, a random one written there (readable by its owner
only) the first time it is needed.

One process serves many annotators: requests run in its thread pool. For more, `workers`
starts several processes on one port (uvicorn's supervisor); each builds its own app from
the settings this process hands down in the environment (`app_from_environment`), since a
worker is a fresh interpreter. They share the database and so the cookie key (the key's
outside half is the `.secret` file beside a SQLite database, or the admin token): a
session begun in one worker is good in every other. PostgreSQL takes writes from many
processes at once; SQLite takes one writer at a time, whatever the number of processes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from model.errors import Gpt2labError
from pipelines.services import answers, spawn, wait_until_up
from pipelines.workspace import preferences_db_path, workspace_dir

ADMIN_TOKEN_ENV = "GPT2LAB_ADMIN_TOKEN"
# The settings a worker process builds its app from (JSON; the token stays in its own
# variable, so that it is never written anywhere else).
PAGE_SETTINGS_ENV = "GPT2LAB_PAGE_SETTINGS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def default_database_url() -> str:
    """`<workspace>/preferences.db` as an absolute SQLite URL (four slashes)."""
    return f"sqlite:///{preferences_db_path().as_posix()}"


def admin_token() -> str:
    """The admin token (see the module doc), made and saved on first use. One from the
    environment must be as strong as the page asks (MIN_ADMIN_TOKEN_CHARS)."""
    from tasks.preferences.web import MIN_ADMIN_TOKEN_CHARS

    if token := os.environ.get(ADMIN_TOKEN_ENV):
        if len(token) < MIN_ADMIN_TOKEN_CHARS:
            raise Gpt2labError(
                f"${ADMIN_TOKEN_ENV} has {len(token)} characters, the page needs at least "
                f"{MIN_ADMIN_TOKEN_CHARS}: python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))' makes one"
            )
        return token
    path = workspace_dir() / "preferences-admin-token"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the page on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure_warning(host: str) -> str | None:
    """What to tell the person who binds the page to `host`; None on loopback."""
    if is_loopback(host):
        return None
    return (
        f"the comparison page binds {host}, reachable from other machines: put a TLS proxy "
        "in front of it (its cookies are HTTPS-only there; see docs/preferences.md)"
    )


def workers_warning(database_url: str, workers: int) -> str | None:
    """What to tell the person who starts several worker processes on SQLite; else None."""
    from tasks.private_files import sqlite_file

    if workers == 1 or not database_url.startswith("sqlite"):
        return None
    where = sqlite_file(database_url) or "an in-memory database"
    return (
        f"{workers} processes share {where}, and SQLite lets one of them write at a time: "
        "they vote correctly, but add no capacity and make the slowest votes slower "
        "(docs/preferences.md); use PostgreSQL for several processes"
    )


def serve(
    database_url: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    https_only: bool | None = None,
    allowed_hosts: list[str] | None = None,
    trusted_proxies: list[str] | None = None,
    workers: int = 1,
) -> None:
    """Serve the page until interrupted: in this process, or in `workers` processes.

    `https_only` None means: on unless `host` is a loopback address. `allowed_hosts`
    None means: the loopback names when bound to loopback, any host otherwise.
    `trusted_proxies` are the addresses whose X-Forwarded-* headers are believed (none
    by default: a client could otherwise claim HTTPS or another address)."""
    import uvicorn

    from tasks.preferences.store import open_database

    if workers < 1:
        raise ValueError(f"--workers must be 1 or more, not {workers}")
    local = is_loopback(host)
    if allowed_hosts is None and local:
        allowed_hosts = list(LOOPBACK_NAMES)
    settings = {
        "database_url": database_url,
        "https_only": not local if https_only is None else https_only,
        "allowed_hosts": allowed_hosts,
    }
    server_options = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": bool(trusted_proxies),
        "forwarded_allow_ips": ",".join(trusted_proxies or []) or None,
    }
    if workers == 1:
        uvicorn.run(app_from_settings(settings, admin_token()), **server_options)
        return
    # Tables made once, here, before the workers start: several processes creating them
    # at the same moment would race.
    open_database(database_url).dispose()
    os.environ[ADMIN_TOKEN_ENV] = admin_token()  # the workers inherit the environment
    os.environ[PAGE_SETTINGS_ENV] = json.dumps(settings)
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **server_options)


def app_from_settings(settings: dict, token: str):
    """The page's app for `settings` (the dict `serve` builds) and the admin `token`."""
    from tasks.preferences.web import create_app

    return create_app(
        settings["database_url"],
        token,
        https_only=settings["https_only"],
        allowed_hosts=settings["allowed_hosts"],
    )


def app_from_environment():
    """The app of one worker process: `serve` put its settings and the admin token in the
    environment before starting the workers (uvicorn calls this in each one)."""
    return app_from_settings(json.loads(os.environ[PAGE_SETTINGS_ENV]), os.environ[ADMIN_TOKEN_ENV])


def page_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def page_is_up(url: str) -> bool:
    """Whether the comparison page answers at `url` (and it is ours, not another server)."""
    from tasks.preferences.web import APP_NAME

    return answers(f"{url}/health", lambda r: r.is_success and r.json().get("app") == APP_NAME)


def start_page(
    database_url: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 60.0
) -> tuple[str, bool]:
    """Start the page as a background process, or reuse the one already answering there.

    Returns (its address, whether it was started now). The process is detached (its own
    session), so it keeps serving after the flow that started it ends; its log goes to
    `<workspace>/logs/comparison-page-<port>.log`.
    """
    url = page_url(host, port)
    if page_is_up(url):
        return url, False
    log_path = workspace_dir() / "logs" / f"comparison-page-{port}.log"
    env = {**os.environ, ADMIN_TOKEN_ENV: admin_token()}  # not on the command line: ps shows it
    command = [sys.executable, "-m", "pipelines.comparison_server", database_url, host, str(port)]
    process = spawn(command, log_path, env, detached=True)
    _pid_file(port).write_text(f"{process.pid}\n")
    wait_until_up(
        f"the comparison page at {url}", lambda: page_is_up(url), process, log_path, timeout
    )
    return url, True


def _pid_file(port: int) -> Path:
    return workspace_dir() / "logs" / f"comparison-page-{port}.pid"


def stop_page(port: int = DEFAULT_PORT, timeout: float = 10.0) -> bool:
    """Stop the page that `start_page` started on `port`; False if none was running."""
    path = _pid_file(port)
    if not path.exists():
        return False
    pid = int(path.read_text())
    path.unlink()
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone already
    if b"pipelines.comparison_server" not in cmdline:
        return False  # the pid was reused by an unrelated process: leave it alone
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    return True


def _running(pid: int) -> bool:
    """Whether `pid` is still running (an exited child that is not reaped yet is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def invite_link(url: str, token: str) -> str:
    return f"{url}/join/{token}"


def _main(argv: list[str]) -> None:  # pragma: no cover - run by start_page in a new process
    database_url, host, port, *workers = argv
    serve(database_url, host, int(port), workers=int(workers[0]) if workers else 1)


if __name__ == "__main__":  # pragma: no cover
    from pipelines.workspace import configure_environment

    configure_environment()
    _main(sys.argv[1:])
