"""Watching the application's ports: the agent activates once every one accepts connections."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from pca_core.runtime.scheduler import Scheduler, Task

_log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
"""Seconds between two checks."""


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PortWatcher:
    """Checks the ports every :data:`CHECK_INTERVAL` seconds until all are open, then calls ``on_open``.

    It keeps checking however long that takes (the original agent gave up after its timeout and never
    activated); after ``warn_after`` seconds it warns once, naming the ports still closed.

    Args:
        scheduler: runs the checks.
        host: where the ports are.
        ports: the ports that must accept connections.
        warn_after: seconds of waiting after which a warning is logged.
        on_open: called once, on a scheduler worker, when every port is open.
    """

    def __init__(self, scheduler: Scheduler, host: str, ports: Sequence[int], warn_after: float,
                 on_open: Callable[[], object]) -> None:
        self._scheduler = scheduler
        self._host = host
        self._ports = tuple(ports)
        self._warn_after = warn_after
        self._on_open = on_open
        self._lock = threading.Lock()
        self._task: Task | None = None
        self._since = 0.0
        self._warned = False

    def start(self) -> None:
        """Starts checking, at once; restarting resets the warning's clock."""
        with self._lock:
            self._since = time.monotonic()
            self._warned = False
            if self._task is None:
                self._task = self._scheduler.every(CHECK_INTERVAL, self._check, name="port check",
                                                   initial_delay=0)

    def stop(self) -> None:
        """Stops checking; idempotent."""
        with self._lock:
            task, self._task = self._task, None
        if task is not None:
            task.cancel()

    def _check(self) -> None:
        closed = [p for p in self._ports if not port_open(self._host, p)]
        if not closed:
            with self._lock:
                if self._task is None:
                    return  # stopped meanwhile
            self.stop()
            self._on_open()
            return
        waited = time.monotonic() - self._since
        if waited >= self._warn_after and not self._warned:
            self._warned = True
            _log.warning("ports %s on %s not open after %.0f s; still checking", closed, self._host, waited)
