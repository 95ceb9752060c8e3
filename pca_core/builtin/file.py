"""The ``file`` log publisher: records as JSON lines appended to a file."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogPublisher, LogRecord
from pca_core.api.plugin import Capability, PluginOptions


class FileOptions(PluginOptions):
    """Options of the ``file`` publisher.

    Attributes:
        path: the file to append to; its directory is created if missing.
        fsync: make every batch durable on disk before ``publish`` returns.
    """

    path: str
    fsync: bool = False


class FileLogPublisher(LogPublisher):
    """Appends each record as one JSON object per line: ``{"stream", "timestamp", "fields"}``.

    The file is opened for each batch, so a log rotator may move it away at any time. A batch is written
    whole or not at all: when a write fails (a full disk), what part of the batch reached the file is cut
    off again and ``publish`` raises, so the core's next attempt neither repeats records nor follows a
    cut line.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.ACK})
    Options = FileOptions

    def __init__(self, config: Any, options: FileOptions) -> None:
        super().__init__(config, options)
        self._lock = threading.Lock()
        self._closed = False

    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> int:
        """Appends the batch; returns once it is written (and synced, with ``fsync``): all of it.

        Raises:
            LogPublishError: the file cannot be written, or the publisher was closed.
        """
        if self._closed:
            raise LogPublishError("file", "file publisher: publish after close")
        text = "".join(
            json.dumps({"stream": r.stream, "timestamp": r.timestamp, "fields": dict(r.fields)},
                       default=str, separators=(",", ":")) + "\n"
            for r in batch
        )
        path = Path(self.options.path)
        try:
            with self._lock:
                path.parent.mkdir(parents=True, exist_ok=True)
                _append_all_or_nothing(path, text.encode("utf-8"), fsync=self.options.fsync)
        except OSError as exc:
            message = f"file publisher: cannot write {path}: {exc.strerror or exc}"
            raise LogPublishError("file", message) from exc
        return len(batch)

    def check(self, *, timeout: float | None = None) -> str | None:
        """Checks that ``path`` can be appended to, or created in a directory that exists or can be made.

        Nothing is written.

        Raises:
            LogPublishError: the file or the directory it would be created in is not writable.
        """
        path = Path(self.options.path)
        if path.is_dir():
            raise LogPublishError("file", f"file publisher: {path} is a directory; options.path names a file")
        target = path
        while not target.exists() and target != target.parent:
            target = target.parent
        if target != path and not target.is_dir():  # a file where a directory would have to be
            raise LogPublishError("file", f"file publisher: {target} is not a directory; {path} cannot be "
                                          f"created")
        if not os.access(target, os.W_OK | (os.X_OK if target.is_dir() else 0)):
            raise LogPublishError("file", f"file publisher: {target} is not writable by this user")
        return f"{path} is writable"

    def close(self, timeout: float | None = None) -> None:
        """Refuses further batches; nothing is held open between batches. Idempotent."""
        self._closed = True


def _append_all_or_nothing(path: Path, data: bytes, *, fsync: bool) -> None:
    """Appends ``data`` to ``path``; when that fails, truncates the file back to its size before.

    Raises:
        OSError: the file could not be opened or written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # a device (/dev/full) cannot be truncated; nothing to undo
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
