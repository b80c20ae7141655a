"""Loopback ports for tests: one nothing listens on now (a refused connection, an
unreachable address, a port to give a server)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url() -> str:
    """A loopback URL nothing listens on (its connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"
