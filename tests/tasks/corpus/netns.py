"""Run a test inside a network namespace that has only loopback.

A test that feeds the fetcher outside or private addresses (10.x, 169.254.169.254, a host
name to resolve) must be unable to send a packet off this machine even if the code under
test is wrong. `@loopback_only` re-runs such a test in a fresh pytest process inside
`unshare -n` (as root) or `unshare -rn` (otherwise, as root of a new user namespace),
after `ip link set lo up`. There, 127.0.0.1 works (start the mini-web inside the test)
and every other address fails at once with "network unreachable".

Outside, the decorated test only launches the inner run and reports its result; it is
skipped, with the reason, where namespaces are not available.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

INSIDE = "GPT2LAB_TEST_IN_NETNS"
ROOT = Path(__file__).resolve().parents[3]  # the repository: where pytest finds its config


def _unshare_prefix() -> list[str]:
    """The command that runs its arguments in a loopback-only network namespace."""
    flags = "-n" if os.geteuid() == 0 else "-rn"
    # `exec "$0" "$@"`: run the given command in place of the shell, arguments intact.
    return ["unshare", flags, "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


@functools.cache
def _why_unavailable() -> str | None:
    """None when namespaces work here; else why not (the skip reason)."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed"
    probe = subprocess.run(
        [*_unshare_prefix(), "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


def _assert_really_isolated() -> None:
    """Inside: the only network interface must be loopback (guards against INSIDE being
    set by hand in a normal shell)."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    assert interfaces == ["lo"], f"{INSIDE} is set but the interfaces are {interfaces}"


def loopback_only(test: Callable) -> Callable:
    """Decorator: run this test only inside a loopback-only network namespace."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if os.environ.get(INSIDE) == "1":
            _assert_really_isolated()
            return test(*args, **kwargs)
        if (reason := _why_unavailable()) is not None:
            pytest.skip(f"needs a loopback-only network namespace: {reason}")
        # "tests/x.py::test_name[param] (call)" -> the node id to run again inside.
        node_id = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node_id]
        result = subprocess.run(
            [*_unshare_prefix(), *command],
            cwd=ROOT,
            env={**os.environ, INSIDE: "1"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"inside the network namespace, {node_id} failed:\n"
                f"{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
        if " skipped" in result.stdout and " passed" not in result.stdout:
            pytest.skip(f"skipped inside the network namespace:\n{result.stdout}")

    return wrapper
