"""Errors about files, logged once per file and kind until the file works again."""

from __future__ import annotations

import errno
import logging

__all__ = ["ErrorLog"]

_log = logging.getLogger("pca_core.telemetry.tailer")


class ErrorLog:
    """Remembers which errors were logged for which file, so a broken file is not logged every poll."""

    def __init__(self) -> None:
        self._reported: dict[str, set[str]] = {}

    def report(self, name: str, operation: str, exc: OSError) -> None:
        """Logs that ``operation`` on ``name`` failed, unless the same kind of failure was logged already."""
        kind = f"{operation}:{errno.errorcode.get(exc.errno or 0, type(exc).__name__)}"
        kinds = self._reported.setdefault(name, set())
        if kind in kinds:
            return
        kinds.add(kind)
        _log.warning("log tailer: cannot %s %s: %s (not repeated until it recovers)", operation, name,
                     exc.strerror or exc)

    def recovered(self, name: str) -> None:
        """Notes that ``name`` works again (logged when an error had been)."""
        if self._reported.pop(name, None):
            _log.info("log tailer: %s is readable again", name)
