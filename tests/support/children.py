"""What every test server started as a child process shares: stopping, pausing and resuming it by PID."""

from __future__ import annotations

import signal
import subprocess

STOP_TIMEOUT = 5.0


class ChildServer:
    """A server run as the child process ``_proc`` (None while stopped)."""

    _proc: subprocess.Popen[bytes] | None = None

    def _end(self) -> None:
        """Stops the child (SIGTERM, then SIGKILL) and waits for it; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """Freezes the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Lets a paused server run again (SIGCONT)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The server process's id (for benchmarks that read its CPU time from /proc)."""
        assert self._proc is not None
        return self._proc.pid
