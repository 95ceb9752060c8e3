"""Multiline records: a line that matches a first-line pattern, and the lines after it up to the next one."""

from __future__ import annotations

import re

__all__ = ["Multiline"]


class Multiline:
    """Groups lines into records, as a Java stack trace belongs to the log line above it.

    A record starts at a line that matches ``first_line`` and takes every line after it that does not.
    Lines before the first match form a record of their own. The last record of what was read is held
    back, since the next line may still belong to it, until a first line follows or no line has come for
    ``flush_timeout`` seconds.

    Args:
        first_line: the regular expression a record's first line matches at its start, applied to the
            line's bytes (so digit and word classes match ASCII only).
        flush_timeout: seconds a held record waits for more lines before it is emitted as it is.
        limit: the most bytes of one record; a line that would make it longer starts the next record.

    Raises:
        re.error: ``first_line`` is not a valid regular expression.
    """

    def __init__(self, first_line: str, flush_timeout: float, limit: int) -> None:
        self._first_line = re.compile(first_line.encode())
        self.flush_timeout = flush_timeout
        self._limit = limit

    def group(self, lines: list[tuple[bytes, int]], *, flush: bool) -> tuple[list[tuple[bytes, int]], int]:
        """Joins ``lines`` (each with the index just after it, the first starting at 0) into records.

        Args:
            lines: complete lines, in order, as :func:`~pca_core.telemetry.tailer.lines.split_lines`
                returns them.
            flush: emit the last record too rather than hold it back.

        Returns:
            The records (their lines joined by newlines), each with the index just after its last line,
            and the index where the held-back record starts (just after the last line when none is).
        """
        records: list[tuple[bytes, int]] = []
        group: list[bytes] = []
        size = start = 0  # the group's bytes, and the index where it starts
        end = 0
        match = self._first_line.match
        for line, line_end in lines:
            if group and (match(line) or size + 1 + len(line) > self._limit):
                records.append((b"\n".join(group), end))
                group, size, start = [], 0, end
            size += len(line) + (1 if group else 0)
            group.append(line)
            end = line_end
        if group and flush:
            records.append((b"\n".join(group), end))
            start = end
        return records, start
