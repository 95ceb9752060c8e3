"""The ``file`` log publisher: records as JSON lines appended to a file."""

from __future__ import annotations

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

    The file is opened for each batch, so a log rotator may move it away at any time.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.ACK})
    Options = FileOptions

    def __init__(self, config: Any, options: FileOptions) -> None:
        super().__init__(config, options)
        self._lock = threading.Lock()

    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> int:
        """Appends the batch; returns once it is written (and synced, with ``fsync``): all of it."""
        text = "".join(
            json.dumps({"stream": r.stream, "timestamp": r.timestamp, "fields": dict(r.fields)},
                       default=str, separators=(",", ":")) + "\n"
            for r in batch
        )
        path = Path(self.options.path)
        try:
            with self._lock:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    if self.options.fsync:
                        os.fsync(handle.fileno())
        except OSError as exc:
            message = f"file publisher: cannot write {path}: {exc.strerror or exc}"
            raise LogPublishError("file", message) from exc
        return len(batch)
