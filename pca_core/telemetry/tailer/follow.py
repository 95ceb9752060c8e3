"""Which files the tailer follows: found by name or glob, known by inode, through rotations and restarts.

A :class:`FileSet` opens the files its patterns match, marks those no longer under a watched name as
retiring (rotated or deleted: read to their end, then closed), decides where a newly found file starts
(its saved position, its end, or its start) and, on the first poll after a restart, finds files rotated
while the agent was down.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import stat
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pca_core.telemetry.tailer.lines import line_start
from pca_core.telemetry.tailer.positions import HEAD_BYTES, FileId, Position
from pca_core.telemetry.tailer.reporting import ErrorLog

__all__ = ["Emitted", "FileSet", "FollowedFile"]

_log = logging.getLogger("pca_core.telemetry.tailer")

_GLOB_CHARS = frozenset("*?[")


class Emitted:
    """Lines of one file handed to the sink in one call, until the sink says what became of them.

    Attributes:
        end: the offset just after the last of them.
        count: how many records they made.
        size: their bytes.
        outcome: None while pending; True once every publisher accepted them all, False when at least
            one was dropped. Set by the sink's callback on whatever thread it runs; read under the
            tailer's lock (a single attribute store needs no lock of its own).
    """

    __slots__ = ("count", "end", "outcome", "size")

    def __init__(self, end: int, count: int, size: int) -> None:
        self.end = end
        self.count = count
        self.size = size
        self.outcome: bool | None = None


@dataclass(eq=False, slots=True)
class FollowedFile:
    """A followed file, identified by its inode; it holds one open descriptor until closed.

    Offsets, in bytes from the file's start, in increasing order: ``acked`` (after the last line every
    publisher accepted: what the position file keeps), the ends of the lines in :attr:`unsettled`, then
    ``offset - len(pending)`` (after the last line emitted) and ``offset`` (where the next read starts).
    """

    id: FileId
    path: str  # the name it was first found under: records and the position file carry it
    fd: int  # -1 once closed
    offset: int
    head: bytes  # the file's first bytes (up to HEAD_BYTES)
    acked: int
    pending: bytes = b""  # the unfinished last line (with multiline, the held record): read, not emitted
    line_at: float = 0.0  # when a complete line was last read from it (a held record's flush timeout)
    retiring_since: int | None = None  # the poll that found it no longer under a watched name
    unsettled: deque[Emitted] = field(default_factory=deque)  # emitted, not yet settled, oldest first

    def position(self) -> Position:
        """Its position for the position file: the offset of what was accepted."""
        return Position.of(self.path, self.id, self.acked, self.head)


class FileSet:
    """The files the patterns match, opened and followed, and the saved positions not yet matched.

    Args:
        patterns: file paths or glob patterns, without duplicates.
        errors: where errors about files are logged.
        saved: positions loaded from the position file, by (device, inode).
        known_patterns: the patterns the position file says were watched before.
        start_at_end: whether files there now, under a pattern not watched before, start at their end.
        max_line: the longest line; a file started at its end starts at the line being written.

    Attributes:
        files: the followed files, by (device, inode), in the order they were found.
        saved: positions not yet matched to a followed file.
        dirty: something the position file holds changed since it was last written.
    """

    def __init__(self, patterns: Sequence[str], errors: ErrorLog, *, saved: Mapping[FileId, Position],
                 known_patterns: frozenset[str], start_at_end: bool, max_line: int) -> None:
        self.patterns = tuple(patterns)
        self.files: dict[FileId, FollowedFile] = {}
        self.saved = dict(saved)
        self.dirty = False
        self._errors = errors
        self._known_patterns = known_patterns
        self._start_at_end = start_at_end
        self._max_line = max_line
        # Sizes of the files there now: start_at_end starts them here rather than at the first poll.
        self._initial: dict[FileId, int] = {}
        for name, _pattern in self._names():
            with contextlib.suppress(OSError):
                st = os.stat(name)
                if stat.S_ISREG(st.st_mode):
                    self._initial.setdefault((st.st_dev, st.st_ino), st.st_size)

    def positions(self) -> list[Position]:
        """What the position file should hold now: the followed files, then the unmatched saved ones."""
        return [f.position() for f in self.files.values()] + list(self.saved.values())

    def discover(self, poll: int) -> list[FileId]:
        """Opens newly matched files and marks followed files no longer matched as retiring.

        Args:
            poll: the number of this poll, from 1.

        Returns:
            The ids of the files under a watched name, in the order of the patterns.
        """
        seen: dict[FileId, None] = {}
        for name, pattern in self._names():
            try:
                st = os.stat(name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._errors.report(name, "stat", exc)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            fid: FileId | None = (st.st_dev, st.st_ino)
            if fid not in self.files:
                fid = self._open(name, pattern)
            if fid is None or fid in seen:
                continue
            seen[fid] = None
            self.files[fid].retiring_since = None
        if poll == 1:
            self._adopt_rotated()
        self._prune_saved()
        for fid, f in self.files.items():
            if fid not in seen and f.retiring_since is None:
                f.retiring_since = poll
                _log.info("log tailer: %s was rotated or removed; reading it to its end", f.path)
        return list(seen)

    def close_file(self, f: FollowedFile, *, forget: bool = True) -> None:
        """Closes ``f``'s descriptor; with ``forget``, stops following it (its position goes too)."""
        if f.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(f.fd)
            f.fd = -1
        if forget:
            self.files.pop(f.id, None)
            self.dirty = True

    # --- Finding files --------------------------------------------------------------------------------

    def _names(self) -> Iterator[tuple[str, str]]:
        """Yields (name, pattern) for every name the patterns match now, in a stable order."""
        for pattern in self.patterns:
            if _GLOB_CHARS.intersection(pattern):
                for name in sorted(glob.glob(pattern, recursive=True)):
                    yield name, pattern
            else:
                yield pattern, pattern

    def _open(self, name: str, pattern: str) -> FileId | None:
        """Opens ``name`` and starts following it, unless it is already followed.

        Returns:
            The opened file's id, or None when it could not be opened.
        """
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._errors.report(name, "open", exc)
            return None
        try:
            st = os.fstat(fd)
            fid = (st.st_dev, st.st_ino)
            if fid in self.files or not stat.S_ISREG(st.st_mode):  # replaced since the stat
                os.close(fd)
                return fid if fid in self.files else None
            head = os.pread(fd, HEAD_BYTES, 0)
            offset = self._start_offset(fd, fid, name, pattern, head, st.st_size)
        except OSError as exc:
            os.close(fd)
            self._errors.report(name, "open", exc)
            return None
        self.files[fid] = FollowedFile(fid, name, fd, offset, head, acked=offset)
        self.dirty = True
        self._errors.recovered(name)
        _log.debug("log tailer: following %s from offset %d", name, offset)
        return fid

    def _start_offset(self, fd: int, fid: FileId, name: str, pattern: str, head: bytes, size: int) -> int:
        saved = self.saved.pop(fid, None) or self._saved_elsewhere(name, fid)
        if saved is not None:
            if saved.fits(head, size):
                return saved.offset
            _log.info("log tailer: the saved position of %s no longer fits (truncated, or another file "
                      "reusing its inode); reading it from the start", name)
            return 0
        if self._start_at_end and pattern not in self._known_patterns and fid in self._initial:
            return line_start(fd, min(self._initial[fid], size), self._max_line)
        return 0

    def _saved_elsewhere(self, name: str, fid: FileId) -> Position | None:
        """The saved position of the same inode at the same name on another device number.

        Device numbers of network and overlay file systems can change across a reboot or a new container.
        """
        for key, saved in self.saved.items():
            if saved.path == name and saved.ino == fid[1]:
                return self.saved.pop(key)
        return None

    def _adopt_rotated(self) -> None:
        """Follows files that were rotated while the agent was down, from their saved offsets.

        Only siblings named like the original (``app.log`` → ``app.log.1``) are looked at.
        """
        for key, saved in list(self.saved.items()):
            directory, base = os.path.split(saved.path)
            try:
                names = sorted(os.listdir(directory or "."))
            except OSError:
                continue
            for entry in names:
                if not entry.startswith(base) or entry == base:
                    continue
                candidate = os.path.join(directory, entry)
                try:
                    st = os.stat(candidate)
                    adopted = (st.st_dev, st.st_ino) == key and key not in self.files
                    adopted = adopted and self._adopt(candidate, saved)
                except OSError:
                    continue
                if adopted:
                    del self.saved[key]
                    break

    def _adopt(self, name: str, saved: Position) -> bool:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            head = os.pread(fd, HEAD_BYTES, 0)
            fits = (st.st_dev, st.st_ino) == saved.id and saved.fits(head, st.st_size)
        except OSError:
            fits = False
        if not fits:
            os.close(fd)
            return False
        self.files[saved.id] = FollowedFile(saved.id, saved.path, fd, saved.offset, head, acked=saved.offset)
        _log.info("log tailer: %s was rotated to %s while the agent was down; reading it to its end",
                  saved.path, name)
        return True

    def _prune_saved(self) -> None:
        """Forgets saved positions whose file is gone from its name; keeps those not yet openable."""
        for key, saved in list(self.saved.items()):
            try:
                keep = os.stat(saved.path).st_ino == saved.ino
            except OSError as exc:
                keep = exc.errno not in (errno.ENOENT, errno.ENOTDIR)
            if not keep:
                del self.saved[key]
                self.dirty = True
