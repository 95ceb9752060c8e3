"""The log tailer: follows log files and hands each appended line to the record sinks as a record.

The core owns reading files (offsets, rotation, truncation); log publishers only ever see records. The
tailer has no thread of its own: :meth:`LogTailer.poll` does one round of reading and is run periodically
by the agent's :class:`~pca_core.runtime.scheduler.Scheduler`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pca_core.api.log_publisher import LogRecord

if TYPE_CHECKING:
    from pca_core.runtime.scheduler import Scheduler, Task

__all__ = ["LogTailer", "RecordEmitter"]

logger = logging.getLogger(__name__)

FileId = tuple[int, int]  # (st_dev, st_ino)

# The first bytes of a file identify it together with its inode: an inode freed by a deleted file and
# reused by a new one must not inherit the old file's offset (fluent-bit#1875, elastic/beats#1341).
_HEAD_BYTES = 256
_READ_PIECE = 256 * 1024  # one pread never allocates more than this
_FORMAT_VERSION = 1
_GLOB_CHARS = frozenset("*?[")


class RecordEmitter(Protocol):
    """Where the tailer sends its records; :class:`pca_core.telemetry.records.RecordSink` is one.

    ``emit`` must not block. It may raise; the tailer then keeps its position and reads the same lines
    again on its next poll.
    """

    def emit(self, records: Sequence[LogRecord]) -> None:
        """Accepts ``records`` for delivery to the publishers."""


@dataclass(eq=False, slots=True)
class _File:
    """A followed file, identified by its inode; it holds one open descriptor."""

    id: FileId
    path: str  # the name it was first found under: records and the position file carry it
    fd: int
    offset: int  # where the next read starts
    head: bytes  # the file's first bytes (up to _HEAD_BYTES)
    pending: bytes = b""  # the unfinished last line: read, not yet emitted
    retiring_since: int | None = None  # the poll that found it no longer under a watched name

    @property
    def committed(self) -> int:
        """The offset after the last line emitted: where a restart resumes."""
        return self.offset - len(self.pending)


@dataclass(frozen=True, slots=True)
class _Saved:
    """A position loaded from the position file, not yet matched to a followed file."""

    path: str
    dev: int
    ino: int
    offset: int
    head_len: int
    head_sha256: str

    def fits(self, head: bytes, size: int) -> bool:
        """Whether a file with this head and size is the file the position was saved for."""
        return (self.offset <= size and len(head) >= self.head_len
                and _sha256(head[: self.head_len]) == self.head_sha256)


class LogTailer:
    """Follows log files and emits one ``logs`` record per complete line appended to them.

    Each record has the fields ``line`` (the line without its line ending, decoded as UTF-8 with invalid
    bytes replaced), ``path`` (the configured path, or for a glob pattern the name the file was found
    under) and every entry of ``fields``.

    What it does for the user:

    - Paths may be glob patterns; files that appear later are found on a later poll and read from their
      start.
    - Files are identified by (device, inode). After a rotation by rename, the old file is read to its end
      before the new one is read from its start; the old descriptor stays open for one more poll to catch
      late writes, then is closed. A file that shrinks below the read offset (copytruncate) is read again
      from 0. Deleted files are read to their end and closed; missing files are waited for.
    - A partial last line is kept until its newline arrives. A line longer than ``max_line_bytes`` is cut
      into pieces of at most that size (at a UTF-8 character boundary where possible).
    - At most ``read_chunk`` bytes are read per file per poll, so one busy file cannot starve the others.
    - With a ``position_file`` the committed offset of each file is saved atomically after every poll that
      advanced, and on :meth:`close`, so a restarted agent resumes where it stopped: lines written while it
      was down are read, none is emitted twice. A rotation that happened meanwhile is followed when the
      rotated file is still in the same directory under a name that starts with the original one
      (``app.log.1``, ``app.log-20240101``).
    - ``start_at_end`` applies only to files that existed when the tailer was created and whose pattern
      was not watched before (no position file, or a pattern new to it): True skips their existing
      content, like ``tail -f``, False reads them from the start.
    - One open descriptor per followed file (plus rotated files until they are read to their end), no
      thread per file. An error reading a file is logged once per file and kind, not once per poll.

    Copytruncate can lose the lines written between the copy and the truncation, and lines that push the
    truncated file past the old offset before the next poll; prefer rotation by rename.

    Args:
        paths: file paths or glob patterns to follow.
        sink: receives the records.
        position_file: where positions are kept across restarts; None keeps them in memory only.
        max_line_bytes: the longest line emitted in one piece, in bytes.
        read_chunk: the most bytes read from one file in one poll.
        start_at_end: whether files that exist before the first run start at their end.
        fields: extra fields for every record, e.g. the member's identity.
        clock: the source of record timestamps, seconds since the epoch.

    Raises:
        ValueError: ``max_line_bytes`` or ``read_chunk`` is less than 1.
    """

    def __init__(
        self,
        paths: Sequence[str],
        sink: RecordEmitter,
        *,
        position_file: Path | None = None,
        max_line_bytes: int = 65536,
        read_chunk: int = 1 << 20,
        start_at_end: bool = True,
        fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_line_bytes < 1 or read_chunk < 1:
            raise ValueError(f"max_line_bytes and read_chunk must be at least 1, got {max_line_bytes} "
                             f"and {read_chunk}")
        self._patterns = tuple(dict.fromkeys(os.fspath(p) for p in paths))
        self._sink = sink
        self._position_file = Path(position_file) if position_file is not None else None
        self._max_line = max_line_bytes
        self._read_chunk = read_chunk
        self._start_at_end = start_at_end
        self._fields = dict(fields or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[FileId, _File] = {}
        self._polls = 0
        self._closed = False
        self._task: Task | None = None
        self._dirty = self._position_file is not None  # the first poll records the watched patterns
        self._reported: dict[str, set[str]] = {}
        self._emit_failing = False
        self._saved: dict[FileId, _Saved] = {}
        self._known_patterns: frozenset[str] = frozenset()
        if self._position_file is not None:
            self._load_positions(self._position_file)
        # Sizes of the files there now: start_at_end starts them here rather than at the first poll.
        self._initial: dict[FileId, int] = {}
        for name, _pattern in self._names():
            with contextlib.suppress(OSError):
                st = os.stat(name)
                if stat.S_ISREG(st.st_mode):
                    self._initial.setdefault((st.st_dev, st.st_ino), st.st_size)

    # --- Public API -----------------------------------------------------------------------------------

    def poll(self) -> int:
        """Reads what was appended since the last poll and emits one record per complete line.

        Returns:
            The number of records emitted; 0 once the tailer is closed.
        """
        with self._lock:
            if self._closed:
                return 0
            self._polls += 1
            now = self._clock()
            seen = self._discover()
            retiring = [f for f in self._files.values() if f.retiring_since is not None]
            emitted = 0
            blocked: set[str] = set()  # names whose rotated predecessor still has unread lines
            for f in retiring + [self._files[fid] for fid in seen]:
                if f.retiring_since is None and f.path in blocked:
                    continue
                result = self._read(f, now)
                if result is None:  # the sink refused: keep every position, retry on the next poll
                    break
                count, read, drained = result
                emitted += count
                if f.retiring_since is not None:
                    if not drained:
                        blocked.add(f.path)
                    elif read == 0 and self._polls > f.retiring_since:
                        emitted += self._retire(f, now)
            if self._dirty and self._position_file is not None:
                self._save()
            return emitted

    def start(self, scheduler: Scheduler, interval: float = 1.0) -> Task:
        """Polls every ``interval`` seconds on ``scheduler``'s threads; the tailer starts none of its own.

        Returns:
            The periodic task; :meth:`close` cancels it.

        Raises:
            RuntimeError: the tailer is closed or already started.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the log tailer is closed")
            if self._task is not None and not self._task.cancelled:
                raise RuntimeError("the log tailer is already started")
            self._task = scheduler.every(interval, self.poll, name="log-tailer")
            return self._task

    def close(self) -> None:
        """Stops polling, saves the positions and closes every file. Idempotent.

        Positions are not saved when the tailer never polled: the next run is then still a first run.
        A partial last line is not emitted: with a position file it is read again after a restart.
        """
        task = self._task
        if task is not None:
            task.cancel()
        with self._lock:  # waits for a poll in progress
            if self._closed:
                return
            self._closed = True
            if self._position_file is not None and self._polls:  # before a first poll nothing was learnt
                self._save()
            for f in self._files.values():
                with contextlib.suppress(OSError):
                    os.close(f.fd)
            self._files.clear()

    # --- Finding files --------------------------------------------------------------------------------

    def _names(self) -> Iterator[tuple[str, str]]:
        """Yields (name, pattern) for every name the patterns match now, in a stable order."""
        for pattern in self._patterns:
            if _GLOB_CHARS.intersection(pattern):
                for name in sorted(glob.glob(pattern, recursive=True)):
                    yield name, pattern
            else:
                yield pattern, pattern

    def _discover(self) -> list[FileId]:
        """Opens newly matched files and marks followed files no longer matched as retiring.

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
                self._report(name, "stat", exc)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            fid: FileId | None = (st.st_dev, st.st_ino)
            if fid not in self._files:
                fid = self._open(name, pattern)
            if fid is None or fid in seen:
                continue
            seen[fid] = None
            self._files[fid].retiring_since = None
        if self._polls == 1:
            self._adopt_rotated()
        self._prune_saved()
        for fid, f in self._files.items():
            if fid not in seen and f.retiring_since is None:
                f.retiring_since = self._polls
                logger.info("log tailer: %s was rotated or removed; reading it to its end", f.path)
        return list(seen)

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
            self._report(name, "open", exc)
            return None
        try:
            st = os.fstat(fd)
            fid = (st.st_dev, st.st_ino)
            if fid in self._files or not stat.S_ISREG(st.st_mode):  # replaced since the stat
                os.close(fd)
                return fid if fid in self._files else None
            head = os.pread(fd, _HEAD_BYTES, 0)
            offset = self._start_offset(fd, fid, name, pattern, head, st.st_size)
        except OSError as exc:
            os.close(fd)
            self._report(name, "open", exc)
            return None
        self._files[fid] = _File(fid, name, fd, offset, head)
        self._dirty = True
        self._recovered(name)
        logger.debug("log tailer: following %s from offset %d", name, offset)
        return fid

    def _start_offset(self, fd: int, fid: FileId, name: str, pattern: str, head: bytes, size: int) -> int:
        saved = self._saved.pop(fid, None) or self._saved_elsewhere(name, fid)
        if saved is not None:
            if saved.fits(head, size):
                return saved.offset
            logger.info("log tailer: the saved position of %s no longer fits (truncated, or another file "
                        "reusing its inode); reading it from the start", name)
            return 0
        if self._start_at_end and pattern not in self._known_patterns and fid in self._initial:
            return self._line_start(fd, min(self._initial[fid], size))
        return 0

    def _saved_elsewhere(self, name: str, fid: FileId) -> _Saved | None:
        """The saved position of the same inode at the same name on another device number.

        Device numbers of network and overlay file systems can change across a reboot or a new container.
        """
        for key, saved in self._saved.items():
            if saved.path == name and saved.ino == fid[1]:
                return self._saved.pop(key)
        return None

    def _line_start(self, fd: int, end: int) -> int:
        """The start of the line that ``end`` falls in, so a line being written is emitted whole."""
        window = min(end, self._max_line)
        if window == 0:
            return end
        newline = os.pread(fd, window, end - window).rfind(b"\n")
        if newline >= 0:
            return end - window + newline + 1
        return 0 if window == end else end

    def _adopt_rotated(self) -> None:
        """Follows files that were rotated while the agent was down, from their saved offsets.

        Only siblings named like the original (``app.log`` → ``app.log.1``) are looked at.
        """
        for key, saved in list(self._saved.items()):
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
                    adopted = (st.st_dev, st.st_ino) == key and key not in self._files
                    adopted = adopted and self._adopt(candidate, saved)
                except OSError:
                    continue
                if adopted:
                    del self._saved[key]
                    break

    def _adopt(self, name: str, saved: _Saved) -> bool:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            head = os.pread(fd, _HEAD_BYTES, 0)
            fits = (st.st_dev, st.st_ino) == (saved.dev, saved.ino) and saved.fits(head, st.st_size)
        except OSError:
            fits = False
        if not fits:
            os.close(fd)
            return False
        fid = (saved.dev, saved.ino)
        self._files[fid] = _File(fid, saved.path, fd, saved.offset, head)
        logger.info("log tailer: %s was rotated to %s while the agent was down; reading it to its end",
                    saved.path, name)
        return True

    def _prune_saved(self) -> None:
        """Forgets saved positions whose file is gone from its name; keeps those not yet openable."""
        for key, saved in list(self._saved.items()):
            try:
                keep = os.stat(saved.path).st_ino == saved.ino
            except OSError as exc:
                keep = exc.errno not in (errno.ENOENT, errno.ENOTDIR)
            if not keep:
                del self._saved[key]
                self._dirty = True

    # --- Reading --------------------------------------------------------------------------------------

    def _read(self, f: _File, now: float) -> tuple[int, int, bool] | None:
        """Reads up to ``read_chunk`` bytes of ``f`` and emits its complete lines.

        Returns:
            (records emitted, bytes read, whether the end of the file was reached), or None when the sink
            raised, in which case nothing about ``f`` changed.
        """
        offset, pending, head = f.offset, f.pending, f.head
        lines: list[bytes] = []
        chunks: list[bytes] = []
        try:
            size = os.fstat(f.fd).st_size
            if size < offset:
                logger.warning("log tailer: %s was truncated (size %d, offset %d); reading it from the start",
                               f.path, size, offset)
                if pending:
                    lines.append(pending)  # its end went with the truncation
                offset, pending, head = 0, b"", b""
            budget = self._read_chunk
            drained = size <= offset
            while not drained and budget > 0:
                want = min(budget, _READ_PIECE)
                data = os.pread(f.fd, want, offset)
                chunks.append(data)
                offset += len(data)
                budget -= len(data)
                drained = len(data) < want
            if len(head) < _HEAD_BYTES and offset > len(head):
                head = os.pread(f.fd, _HEAD_BYTES, 0)
        except OSError as exc:
            self._report(f.path, "read", exc)
            if f.retiring_since is not None:  # a broken rotated file must not hold up its successor
                self._close_file(f)
            return 0, 0, False
        self._recovered(f.path)
        read = sum(map(len, chunks))
        complete, pending = self._split(pending + b"".join(chunks))
        lines += complete
        if lines and not self._emit([self._record(f, line, now) for line in lines]):
            return None
        if read or offset != f.offset:
            self._dirty = True
        f.offset, f.pending, f.head = offset, pending, head
        return len(lines), read, drained

    def _split(self, buf: bytes) -> tuple[list[bytes], bytes]:
        """Splits ``buf`` into complete lines (over-long ones cut) and the unfinished rest."""
        limit = self._max_line
        lines: list[bytes] = []
        start = 0
        while True:
            newline = buf.find(b"\n", start, start + limit + 1)
            if newline >= 0:
                end = newline - 1 if newline > start and buf[newline - 1] == 0x0D else newline
                lines.append(buf[start:end])
                start = newline + 1
            elif len(buf) - start > limit:
                cut = start + limit
                probe = cut
                while probe > start and probe > cut - 3 and buf[probe] & 0xC0 == 0x80:  # a continuation byte
                    probe -= 1
                if probe > start and buf[probe] & 0xC0 == 0xC0:  # the lead byte of the split character
                    cut = probe
                lines.append(buf[start:cut])
                start = cut
            else:
                return lines, buf[start:]

    def _record(self, f: _File, line: bytes, now: float) -> LogRecord:
        return LogRecord("logs", now, {"line": line.decode("utf-8", errors="replace"), "path": f.path,
                                       **self._fields})

    def _emit(self, records: list[LogRecord]) -> bool:
        try:
            self._sink.emit(records)
        except Exception:
            if not self._emit_failing:
                logger.exception("log tailer: the record sink refused %d records; retrying on later polls",
                                 len(records))
            self._emit_failing = True
            return False
        if self._emit_failing:
            logger.info("log tailer: the record sink accepts records again")
            self._emit_failing = False
        return True

    def _retire(self, f: _File, now: float) -> int:
        """Closes a rotated or removed file read to its end; its unfinished last line is emitted.

        Returns:
            The number of records emitted.
        """
        if f.pending and not self._emit([self._record(f, f.pending, now)]):
            return 0
        emitted = 1 if f.pending else 0
        f.pending = b""
        self._close_file(f)
        logger.debug("log tailer: done with the rotated or removed file %s", f.path)
        return emitted

    def _close_file(self, f: _File) -> None:
        with contextlib.suppress(OSError):
            os.close(f.fd)
        del self._files[f.id]
        self._dirty = True

    # --- Errors ---------------------------------------------------------------------------------------

    def _report(self, name: str, operation: str, exc: OSError) -> None:
        """Logs an error once per file and kind until the file can be read again."""
        kind = f"{operation}:{errno.errorcode.get(exc.errno or 0, type(exc).__name__)}"
        kinds = self._reported.setdefault(name, set())
        if kind in kinds:
            return
        kinds.add(kind)
        logger.warning("log tailer: cannot %s %s: %s (not repeated until it recovers)", operation, name,
                       exc.strerror or exc)

    def _recovered(self, name: str) -> None:
        if self._reported.pop(name, None):
            logger.info("log tailer: %s is readable again", name)

    # --- Positions ------------------------------------------------------------------------------------

    def _load_positions(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("log tailer: cannot read the position file %s: %s; starting as on a first run",
                           path, exc.strerror or exc)
            return
        try:
            doc: Any = json.loads(text)
            saved = {}
            for entry in doc["files"]:
                position = _Saved(str(entry["path"]), int(entry["dev"]), int(entry["ino"]),
                                  int(entry["offset"]), int(entry["head_len"]), str(entry["head_sha256"]))
                saved[(position.dev, position.ino)] = position
            patterns = frozenset(str(p) for p in doc["patterns"])
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("log tailer: %s is not a valid position file (%s); starting as on a first run",
                           path, exc)
            return
        self._saved = saved
        self._known_patterns = patterns

    def _save(self) -> None:
        """Writes every position atomically: a temporary file, fsync, then rename over the old one."""
        assert self._position_file is not None
        path = self._position_file
        entries = [
            {"path": f.path, "dev": f.id[0], "ino": f.id[1], "offset": f.committed,
             "head_len": len(f.head), "head_sha256": _sha256(f.head)}
            for f in self._files.values()
        ] + [
            {"path": s.path, "dev": s.dev, "ino": s.ino, "offset": s.offset, "head_len": s.head_len,
             "head_sha256": s.head_sha256}
            for s in self._saved.values()
        ]
        doc = {"version": _FORMAT_VERSION, "patterns": list(self._patterns), "files": entries}
        temp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("w", encoding="utf-8") as handle:
                json.dump(doc, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            _fsync_directory(path.parent)
        except OSError as exc:
            self._report(str(path), "save positions to", exc)
            return
        self._recovered(str(path))
        self._dirty = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in ``directory`` durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
