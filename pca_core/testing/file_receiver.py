"""A :class:`LogReceiver` for the ``file`` publisher: the smallest complete example of one."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pca_core.api.log_publisher import LogRecord
from pca_core.testing.receiver import LogReceiver

__all__ = ["FileReceiver"]

_FULL_DEVICE = "/dev/full"  # every write to it fails with ENOSPC


class FileReceiver(LogReceiver):
    """The file the ``file`` publisher appends to, with a disk that can fill up.

    :meth:`stop` moves the file aside and puts a link to ``/dev/full`` (Linux) in its place, so that every
    write fails as on a full disk (``ENOSPC``, whoever runs the tests, root included); :meth:`start` puts
    the file back.

    Args:
        directory: where the file lives; a test's own temporary directory.

    Attributes:
        path: the file.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "records.jsonl"
        self._aside = self.path.with_name(f".{self.path.name}.while-full")
        self.options = {"path": str(self.path)}
        self._full = False

    def records(self) -> list[LogRecord]:
        """The complete JSON lines of the file, as records."""
        source = self._aside if self._full else self.path
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        complete = text[: text.rfind("\n") + 1]
        return [LogRecord(doc["stream"], doc["timestamp"], doc["fields"])
                for doc in map(json.loads, complete.splitlines())]

    def stop(self) -> None:
        """Fills the disk: from now on every write to the file fails."""
        if self._full:
            return
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path, self._aside)
        os.symlink(_FULL_DEVICE, self.path)
        self._full = True

    def start(self) -> None:
        """Frees the disk: the file is back, with what it held."""
        if not self._full:
            return
        os.unlink(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._aside, self.path)
        self._full = False
