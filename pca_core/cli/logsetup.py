"""Logging as the ``pca`` command sets it up: level, plain or JSON lines, console or file.

The library never configures logging; only the CLI calls :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pca_core.api.secrets import mask_credentials


class PlainFormatter(logging.Formatter):
    """``2026-11-28 04:07:19,123 INFO pca.runtime: message``, credentials in URLs masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Formats the record, then masks credentials in URLs."""
        return mask_credentials(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Formats the record as one JSON line."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": mask_credentials(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = mask_credentials(self.formatException(record.exc_info))
        return json.dumps(entry)


def configure(level: str = "INFO", fmt: str = "plain", file: str | None = None) -> None:
    """Sends every log record at ``level`` or above to stderr, or to ``file``.

    Raises:
        ValueError: an unknown level or format, or a file that cannot be opened (its directory is missing,
            or permission is denied); the message names it.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR)")
    formatters = {"plain": PlainFormatter, "json": JsonFormatter}
    if fmt not in formatters:
        raise ValueError(f"unknown log format {fmt!r} (plain, json)")
    handler = _file_handler(file) if file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatters[fmt]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # stevedore logs a missing or broken plugin at ERROR; pca reports those itself, once.
    logging.getLogger("stevedore").setLevel(logging.CRITICAL)


def _file_handler(file: str) -> logging.Handler:
    # No directory is created: made by the agent (often root), it would get whatever owner and mode that
    # happens to give, and a mistyped path would go unnoticed.
    directory = Path(file).absolute().parent
    if not directory.is_dir():
        raise ValueError(f"--log-file {file}: the directory {directory} does not exist; create it (with the "
                         "owner and mode the log should have) or choose another path")
    try:
        return logging.FileHandler(file, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--log-file {file}: cannot be opened: {exc.strerror or exc}") from None
