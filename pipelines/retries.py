"""Which failures a task retries: those a second try can fix.

Tasks that fetch over the network or talk to a server retry when the failure was the
network's or the server's (a dropped connection, a timeout, a database that restarted);
an error in the data or the code (a missing file, a bad value, a NaN loss) fails at once,
since it would fail the same way again, only later. Training tasks never retry.
"""

from __future__ import annotations

import httpx

TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, httpx.TransportError)
try:  # huggingface_hub and MLflow's client raise requests' errors
    import requests

    TRANSIENT += (requests.ConnectionError, requests.Timeout)
except ImportError:  # pragma: no cover - requests comes with mlflow
    pass
try:  # a database server (the preferences database on PostgreSQL) that went away
    from sqlalchemy.exc import OperationalError

    TRANSIENT += (OperationalError,)
except ImportError:  # pragma: no cover - sqlalchemy is a dependency
    pass


def is_transient(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, is one a retry can fix."""
    seen = 0
    while error is not None and seen < 10:  # follow `raise ... from` a few steps
        if isinstance(error, TRANSIENT):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only when the task failed on a transient error.
    (Prefect hands it the failed state; its data is the exception the task raised.)"""
    return is_transient(state.data if isinstance(state.data, BaseException) else None)
