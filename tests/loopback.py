"""Loopback helpers shared by the tests that start real servers."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nobody listens on now on 127.0.0.1. Another process could take it before
    the server binds it: a test that cannot afford that retries with a new port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
