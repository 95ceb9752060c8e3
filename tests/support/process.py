"""A ``pca`` process whose output can be awaited line by line."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path


class PcaProcess:
    """Runs ``python -m pca_core ARGS`` with stdout and stderr merged, read by a background thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pca_core", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Returns the first line (from now on) containing ``text``; fails after ``timeout`` seconds."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout}s; output so far:\n"
                                     + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"process ended without a line with {text!r}; output:\n"
                                     + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line

    def finish(self, timeout: float = 30.0) -> int:
        """Waits for the exit code (and the rest of the output)."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
