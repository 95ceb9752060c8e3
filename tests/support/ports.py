"""Local TCP ports for test servers: a free one to listen on, and whether one accepts connections."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something on 127.0.0.1:``port`` accepts a connection within ``timeout`` seconds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False
