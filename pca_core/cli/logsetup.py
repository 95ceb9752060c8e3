"""Logging as the ``pca`` command sets it up: level, plain or JSON lines, console or file.

The library never configures logging; only the CLI calls :func:`configure`. Whatever a plugin logs, no
record is written longer than :data:`MAX_LINE_BYTES` (see :func:`cap_line`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from pca_core.api.secrets import mask_credentials

MAX_LINE_BYTES = 4096
"""The most bytes one record takes in the log, its newline and any traceback included."""


def cap_line(text: str, limit: int = MAX_LINE_BYTES) -> str:
    """``text`` cut so that, with the newline after it, its UTF-8 form fits in ``limit`` bytes.

    A cut line ends with ``… [truncated: N bytes]``, N being the whole text's size; a character is never
    split. Lone surrogates (undecodable bytes smuggled into text) are written as escapes, so the line
    can be encoded whatever the stream.
    """
    data = text.encode("utf-8", "backslashreplace")
    if len(data) < limit:
        return data.decode("utf-8") if len(data) != len(text) else text
    return _cut(data, limit - 1)


def _cut(data: bytes, size: int) -> str:
    """The start of ``data`` (UTF-8) and a marker, ``size`` bytes at most unless the marker alone is more."""
    marker = f"… [truncated: {len(data)} bytes]"
    return data[:max(size - len(marker.encode()), 0)].decode("utf-8", "ignore") + marker


def _capped_json(entry: dict[str, str], limit: int = MAX_LINE_BYTES) -> str:
    """``entry`` as one JSON line that fits in ``limit`` bytes with its newline.

    The traceback is cut first, down to half of the room when the message needs the rest; then the
    message; then, should a logger name be that long, the longest value.
    """
    line = json.dumps(entry)  # ASCII only: its length is its size in bytes
    if len(line) < limit:
        return line
    room = limit - 1 - len(json.dumps({**entry, "message": "", "exception": ""}))
    message = len(json.dumps(entry["message"]))
    if "exception" in entry:
        entry["exception"] = _fit(entry["exception"], max(room - message, room // 2))
    entry["message"] = _fit(entry["message"], room - len(json.dumps(entry.get("exception", ""))))
    line = json.dumps(entry)
    while len(line) >= limit:
        key = max(entry, key=lambda k: len(entry[k]))
        entry[key] = _fit(entry[key], len(json.dumps(entry[key])) - (len(line) - limit + 1))
        line = json.dumps(entry)
    return line


def _fit(text: str, room: int) -> str:
    """``text`` cut as :func:`cap_line` cuts, so that its JSON form takes ``room`` bytes at most if it can."""
    escaped = len(json.dumps(text))
    if escaped <= room:
        return text
    data = text.encode("utf-8", "backslashreplace")
    size = len(data) * room // escaped
    while True:
        cut = _cut(data, size)
        escaped = len(json.dumps(cut))
        if escaped <= room or size <= 0:
            return cut
        size = min(size - 1, size * room // escaped)


class PlainFormatter(logging.Formatter):
    """``2026-11-28 04:07:19,123 INFO pca.runtime: message``, credentials in URLs masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Formats the record, masks credentials in URLs, then caps it (see :func:`cap_line`)."""
        return cap_line(mask_credentials(super().format(record)))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any).

    A line that would exceed :data:`MAX_LINE_BYTES` is still one valid JSON object: its longest values are
    cut, each ending with ``… [truncated: N bytes]``.
    """

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
        return _capped_json(entry)


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
