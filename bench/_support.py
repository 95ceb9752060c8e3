"""What the benchmarks share: a Mosquitto of their own on a free port of 127.0.0.1, and bounded waiting.

The benchmarks do not import the test suite's helpers (``tests/support``): they run from a checkout
without it on the path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls ``condition`` until it is true.

    Raises:
        TimeoutError: it was still false after ``timeout`` seconds; the message says ``what`` was awaited.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


class Mosquitto:
    """A ``mosquitto`` child process listening on a free port of 127.0.0.1, for as long as a ``with`` block.

    Args:
        extra: further lines of its configuration (e.g. ``max_queued_messages 0``).

    Attributes:
        port: the listener's port.
        url: ``mqtt://127.0.0.1:<port>``.
    """

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        binary = next((path for path in (shutil.which("mosquitto"), "/usr/sbin/mosquitto") if path
                       and Path(path).exists()), None)
        if binary is None:
            raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self._binary = binary
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._extra = extra
        self._directory = tempfile.TemporaryDirectory(prefix="pca-bench-mosquitto-")
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mosquitto:
        directory = Path(self._directory.name)
        config = directory / "mosquitto.conf"
        # As root, Mosquitto would switch to user mosquitto, who cannot read a root-owned config.
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 f"log_dest file {directory / 'mosquitto.log'}", "user root" if os.geteuid() == 0 else "",
                 *self._extra]
        config.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen([self._binary, "-c", str(config)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self._proc
        try:
            wait_until(lambda: proc.poll() is not None or _accepts(self.port), START_TIMEOUT,
                       f"mosquitto listening on {self.port}")
        except TimeoutError:
            self.__exit__()
            raise
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode} at start")
        return self

    def __exit__(self, *_exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self._directory.cleanup()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
