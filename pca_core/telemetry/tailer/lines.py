"""Cutting what was read from a file into lines: newline-terminated, CR LF aware, length-bounded."""

from __future__ import annotations

import os

__all__ = ["line_start", "split_lines"]


def split_lines(buf: bytes, limit: int, max_lines: int | None = None) -> tuple[list[tuple[bytes, int]], int]:
    """Splits ``buf`` into complete lines, over-long ones cut, and finds the unfinished rest.

    A line ends at a newline (a carriage return before it is removed). A line longer than ``limit``
    bytes is cut into pieces of at most ``limit`` bytes, at a UTF-8 character boundary where one is near.
    With ``max_lines``, splitting stops after that many lines.

    Returns:
        The lines, each with the index in ``buf`` just after it (after its newline), and the index where
        the unfinished rest begins (or, after ``max_lines`` lines, where the next line begins).
    """
    lines: list[tuple[bytes, int]] = []
    start = 0
    while True:
        if max_lines is not None and len(lines) >= max_lines:
            return lines, start
        newline = buf.find(b"\n", start, start + limit + 1)
        if newline >= 0:
            end = newline - 1 if newline > start and buf[newline - 1] == 0x0D else newline
            lines.append((buf[start:end], newline + 1))
            start = newline + 1
        elif len(buf) - start > limit:
            cut = start + limit
            probe = cut
            while probe > start and probe > cut - 3 and buf[probe] & 0xC0 == 0x80:  # a continuation byte
                probe -= 1
            if probe > start and buf[probe] & 0xC0 == 0xC0:  # the lead byte of the split character
                cut = probe
            lines.append((buf[start:cut], cut))
            start = cut
        else:
            return lines, start


def line_start(fd: int, end: int, limit: int) -> int:
    """The start of the line that offset ``end`` of file ``fd`` falls in, looking back ``limit`` bytes.

    Starting a file there, rather than at ``end``, emits a line being written whole.

    Raises:
        OSError: the file cannot be read.
    """
    window = min(end, limit)
    if window == 0:
        return end
    newline = os.pread(fd, window, end - window).rfind(b"\n")
    if newline >= 0:
        return end - window + newline + 1
    return 0 if window == end else end
