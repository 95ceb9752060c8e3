"""The log tailer: follows log files and hands each appended line to the record sink as a record.

The core owns reading files (offsets, rotation, truncation); log publishers only ever see records. The
tailer reads on no thread of its own: :meth:`LogTailer.poll` does one round of reading and is run
periodically by the agent's :class:`~pca_core.runtime.scheduler.Scheduler`, and earlier when its one
watch thread (:mod:`.watch`, Linux) sees a followed directory change.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pca_core.api.errors import PcaError
from pca_core.api.log_publisher import LogRecord
from pca_core.telemetry.tailer.follow import Emitted, FileSet, FollowedFile
from pca_core.telemetry.tailer.lines import split_lines
from pca_core.telemetry.tailer.multiline import Multiline
from pca_core.telemetry.tailer.positions import HEAD_BYTES, load_positions, save_positions
from pca_core.telemetry.tailer.reporting import ErrorLog
from pca_core.telemetry.tailer.watch import DirectoryWatch, watched_directories

if TYPE_CHECKING:
    from pca_core.runtime.scheduler import Scheduler, Task

__all__ = ["LogTailer", "RecordEmitter"]

_log = logging.getLogger("pca_core.telemetry.tailer")

_READ_PIECE = 256 * 1024  # one pread never allocates more than this

LINES_PER_READ = 1000
"""Lines read from one file in one poll at most; a busy file is read on by the next poll at once. Short
polls give the interpreter lock back often, so publishers waiting for it are not held up."""

EMIT_GROUP = 100
"""Lines per ``emit`` call at most. The sink settles a call as a whole, so this bounds how many lines a
crash may deliver twice per file beyond those no publisher accepted."""


class RecordEmitter(Protocol):
    """Where the tailer sends its records; :class:`pca_core.telemetry.records.RecordSink` is one.

    ``emit`` must not block. It may raise; the tailer then keeps its position and reads the same lines
    again on its next poll. It calls ``on_settled`` once, when every record of the call was accepted by
    every publisher (``True``) or at least one was dropped (``False``): only then do the lines count as
    delivered.
    """

    def emit(self, records: Sequence[LogRecord], *,
             on_settled: Callable[[bool], object] | None = None) -> None:
        """Accepts ``records`` for delivery to the publishers."""


class LogTailer:
    """Follows log files and emits one ``logs`` record per complete line appended to them, at least once.

    Each record has the fields ``line`` (the line without its line ending, decoded as UTF-8 with invalid
    bytes replaced), ``path`` (the configured path, or for a glob pattern the name the file was found
    under) and every entry of ``fields``.

    What it does for the user:

    - Paths may be glob patterns; files that appear later are found on a later poll and read from their
      start.
    - Files are identified by (device, inode). After a rotation by rename, the old file is read to its end
      before the new one is read from its start; the old descriptor stays open for one more poll to catch
      late writes, then is closed once its lines were delivered. A file that shrinks below the read
      offset (copytruncate) is read again from 0. Deleted files are read to their end and closed; missing
      files are waited for.
    - A partial last line is kept until its newline arrives. A line longer than ``max_line_bytes`` is cut
      into pieces of at most that size (at a UTF-8 character boundary where possible).
    - With ``multiline``, a record is a first line and the lines after it (joined by newlines), up to
      ``max_line_bytes``; the last one is held until the next first line, or for the multiline's flush
      timeout when no line comes (no longer once its file was rotated and read to its end); one of more
      lines than one read may hand over goes in pieces.
    - At most ``read_chunk`` bytes are read per file per poll, so one busy file cannot starve the others.
    - **At least once.** A line counts as delivered only once the sink says every publisher accepted it.
      With a ``position_file`` the offset after the last delivered line of each file is saved atomically
      by the first poll that advanced it after ``save_interval`` seconds since the last save, and on
      :meth:`close` (and after it, as late acknowledgements arrive), so a restarted agent resumes there:
      lines written while it was down are read, lines handed to the sink but not delivered are read again
      (a publisher may then receive some twice), none is lost. A rotation that happened meanwhile is
      followed when the rotated file is still in the same directory under a name that starts with the
      original one (``app.log.1``, ``app.log-20240101``).
    - **Bounded.** At most ``max_unsettled`` lines, of ``max_unsettled_bytes`` bytes in all, are handed
      to the sink and not yet settled (plus, per file, one unfinished line or held record); beyond that,
      reading pauses and the lines wait in their files (a publisher that is down fills no buffer).
      Lines the sink dropped all the same (an overflow) are read again from the last delivered line.
    - ``start_at_end`` applies only to files that existed when the tailer was created and whose pattern
      was not watched before (no position file, or a pattern new to it): True skips their existing
      content, like ``tail -f``, False reads them from the start.
    - One open descriptor per followed file (plus rotated files until their lines are delivered), no
      thread per file. An error reading a file is logged once per file and kind, not once per poll.

    Copytruncate can lose the lines written between the copy and the truncation, and lines that push the
    truncated file past the old offset before the next poll; prefer rotation by rename.

    Args:
        paths: file paths or glob patterns to follow.
        sink: receives the records and says when they were delivered.
        position_file: where positions are kept across restarts; None keeps them in memory only.
        max_line_bytes: the longest line emitted in one piece, in bytes.
        read_chunk: the most bytes read from one file in one poll.
        max_unsettled: the most lines handed to the sink and not yet settled.
        max_unsettled_bytes: the most bytes of lines handed to the sink and not yet settled.
        multiline: how lines make records, when a record may span several lines; None: one per line.
        save_interval: seconds between two writes of the position file at least (it is written when
            something in it changed, and on close).
        start_at_end: whether files that exist before the first run start at their end.
        fields: extra fields for every record, e.g. the member's identity.
        clock: the source of record timestamps, seconds since the epoch.

    Raises:
        ValueError: ``max_line_bytes``, ``read_chunk``, ``max_unsettled`` or ``max_unsettled_bytes`` is
            less than 1, or ``save_interval`` is negative.
    """

    def __init__(
        self,
        paths: Sequence[str],
        sink: RecordEmitter,
        *,
        position_file: Path | None = None,
        max_line_bytes: int = 65536,
        read_chunk: int = 1 << 20,
        max_unsettled: int = 5000,
        max_unsettled_bytes: int = 8 << 20,
        multiline: Multiline | None = None,
        save_interval: float = 5.0,
        start_at_end: bool = True,
        fields: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min(max_line_bytes, read_chunk, max_unsettled, max_unsettled_bytes) < 1 or save_interval < 0:
            raise ValueError(f"max_line_bytes, read_chunk, max_unsettled and max_unsettled_bytes must be at "
                             f"least 1 and save_interval not negative, got {max_line_bytes}, {read_chunk}, "
                             f"{max_unsettled}, {max_unsettled_bytes} and {save_interval}")
        self._sink = sink
        self._position_file = Path(position_file) if position_file is not None else None
        self._max_line = max_line_bytes
        self._read_chunk = read_chunk
        self._max_unsettled = max_unsettled
        self._max_bytes = max_unsettled_bytes
        self._multiline = multiline
        self._save_interval = save_interval
        self._saved_at = -float("inf")  # time.monotonic() of the last write of the position file
        self._fields = dict(fields or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = ErrorLog()
        saved, known = load_positions(self._position_file) if self._position_file is not None else ({}, None)
        self._files = FileSet(tuple(dict.fromkeys(os.fspath(p) for p in paths)), self._errors, saved=saved,
                              known_patterns=known or frozenset(), start_at_end=start_at_end,
                              max_line=max_line_bytes)
        self._files.dirty = self._position_file is not None  # the first poll records the watched patterns
        self._unsettled = 0  # lines handed to the sink and not yet settled, in all files
        self._unsettled_bytes = 0  # their bytes
        self._polls = 0
        self._closed = False
        self._task: Task | None = None
        self._emit_failing = False
        self._scheduler: Scheduler | None = None
        self._backlog = False  # the last poll left lines in a file (read budget or max_unsettled reached)
        self._wake_lock = threading.Lock()
        self._wake_queued = False  # an early poll is queued on the scheduler
        self._watch: DirectoryWatch | None = None

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
            if self._watch is not None:
                self._watch.refresh()  # a directory that appeared since is watched from now on
            self._settle_all()
            seen = self._files.discover(self._polls)
            files = self._files.files
            retiring = [f for f in files.values() if f.retiring_since is not None]
            emitted = 0
            backlog = False
            blocked: set[str] = set()  # names whose rotated predecessor still has unread lines
            for f in retiring + [files[fid] for fid in seen]:
                if f.retiring_since is None and f.path in blocked:
                    continue
                result = self._read(f, now)
                if result is None:  # the sink refused: keep every position, retry on the next poll
                    break
                count, read, drained = result
                emitted += count
                backlog = backlog or not drained
                if f.retiring_since is not None:
                    if not drained:
                        blocked.add(f.path)
                    elif read == 0 and self._polls > f.retiring_since:
                        emitted += self._retire(f, now)
            self._settle_all()
            self._save_if_changed()
            self._backlog = backlog
            room = self._has_room()
        if backlog and room:
            self._wake()  # more to read and room for it: no need to wait for the next tick
        return emitted

    def lag_bytes(self) -> int:
        """Bytes of the followed files not yet accepted by every publisher.

        That is, appended and not read yet, read and on their way, or held (an unfinished line or record).
        """
        with self._lock:
            lag = 0
            for f in self._files.files.values():
                try:
                    size = os.fstat(f.fd).st_size if f.fd >= 0 else f.offset
                except OSError:
                    size = f.offset
                lag += max(size - f.acked, 0)
            return lag

    def start(self, scheduler: Scheduler, interval: float = 1.0, *, watch: bool = True) -> Task:
        """Polls every ``interval`` seconds on ``scheduler``'s threads.

        With ``watch`` (and Linux's inotify), one thread of the tailer's own, ``pca-tailer-watch``, also
        brings the next poll forward as soon as a file in a followed directory changes (at most every
        :data:`~pca_core.telemetry.tailer.watch.MIN_GAP` seconds), so lines leave within milliseconds
        of being written rather than up to ``interval`` later. A pattern whose directory part is a glob
        is polled only.

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
            self._scheduler = scheduler
            if watch and self._watch is None:
                self._watch = DirectoryWatch.start(watched_directories(self._files.patterns), self._changed)
            return self._task

    def close(self) -> None:
        """Stops polling, saves the positions and closes every file. Idempotent.

        Positions are not saved when the tailer never polled: the next run is then still a first run.
        A partial last line is not emitted: with a position file it is read again after a restart. Lines
        the sink delivers after the close (a record sink delivers what it holds when it closes) still
        advance the saved positions.
        """
        task, watch = self._task, self._watch
        if task is not None:
            task.cancel()
        if watch is not None:
            watch.close()
        with self._lock:  # waits for a poll in progress
            if self._closed:
                return
            self._closed = True
            self._settle_all()
            self._save_if_changed(force=True)
            for f in list(self._files.files.values()):
                self._files.close_file(f, forget=False)  # kept: late acknowledgements update them

    # --- Reading --------------------------------------------------------------------------------------

    def _read(self, f: FollowedFile, now: float) -> tuple[int, int, bool] | None:
        """Reads up to ``read_chunk`` bytes of ``f`` and emits its complete lines (as many as may be).

        Returns:
            (records emitted, bytes read, whether the end of the file was reached), or None when the sink
            raised, in which case ``f`` advanced only past the lines it took before.
        """
        self._settle(f)
        room = min(self._max_unsettled - self._unsettled, LINES_PER_READ)
        byte_room = self._max_bytes - self._unsettled_bytes
        if room <= 0 or byte_room <= 0:
            return 0, 0, False  # paused until the sink delivered some: the lines wait in the file
        offset, pending, head = f.offset, f.pending, f.head
        lines: list[tuple[bytes, int]] = []  # (line, the file offset just after it)
        chunks: list[bytes] = []
        truncated = False
        try:
            size = os.fstat(f.fd).st_size
            if size < offset:
                _log.warning("log tailer: %s was truncated (size %d, offset %d); reading it from the start",
                             f.path, size, offset)
                truncated = True
                lines += [(record, 0) for record in self._leftover(pending)]  # its end went with the file
                offset, pending, head = 0, b"", b""
            budget = min(self._read_chunk, byte_room)
            drained = size <= offset
            newlines = 0
            while not drained and budget > 0 and newlines < room:  # no more than the room takes
                want = min(budget, _READ_PIECE)
                data = os.pread(f.fd, want, offset)
                chunks.append(data)
                offset += len(data)
                budget -= len(data)
                drained = len(data) < want
                newlines += data.count(b"\n")
            if len(head) < HEAD_BYTES and offset > len(head):
                head = os.pread(f.fd, HEAD_BYTES, 0)
        except OSError as exc:
            self._errors.report(f.path, "read", exc)
            if f.retiring_since is not None:  # a broken rotated file must not hold up its successor
                self._forget_unsettled(f)
                self._files.close_file(f)
            return 0, 0, False
        self._errors.recovered(f.path)
        read = sum(map(len, chunks))
        buf = pending + b"".join(chunks)
        base = offset - len(buf)  # the file offset where buf starts
        wanted = room - len(lines)
        complete, rest = split_lines(buf, self._max_line, wanted)
        full = len(complete) >= wanted
        if newlines:
            f.line_at = now
        if self._multiline is not None:  # the last record may go on: held back unless it waited enough
            flush = not full and now - f.line_at >= self._multiline.flush_timeout
            records, held = self._multiline.group(complete, flush=flush)
            if full and not records and complete:  # one record fills the room: it goes in pieces
                records, held = self._multiline.group(complete, flush=True)
            complete, rest = records, held
        lines += [(line, base + end) for line, end in complete]
        pending = buf[rest:]
        if full:  # no more room: the rest is read again once the sink caught up
            offset, pending, drained = base + rest, b"", False
        if truncated:  # what was on its way from the old content is gone from the file either way
            self._forget_unsettled(f)
            f.acked = 0
            self._files.dirty = True
        handed = self._emit(f, lines, now)
        refused = handed < len(lines)
        if refused:  # what the sink took counts; the rest is read again on a later poll
            if not handed:
                return None
            lines = lines[:handed]
            offset, pending = lines[-1][1], b""
        if read or offset != f.offset:
            self._files.dirty = True
        f.offset, f.pending, f.head = offset, pending, head
        return None if refused else (len(lines), read, drained)

    def _emit(self, f: FollowedFile, lines: list[tuple[bytes, int]], now: float) -> int:
        """Hands ``lines`` of ``f`` to the sink, :data:`EMIT_GROUP` at a time.

        Returns:
            How many were handed over before the sink refused (all of them when it did not).
        """
        handed = 0
        while handed < len(lines):
            group = lines[handed:handed + EMIT_GROUP]
            emitted = Emitted(group[-1][1], len(group), sum(len(line) for line, _ in group))
            records = [self._record(f, line, now) for line, _ in group]
            try:
                self._sink.emit(records, on_settled=functools.partial(self._on_settled, emitted))
            except Exception:
                if not self._emit_failing:
                    _log.exception("log tailer: the record sink refused %d records; retrying on later polls",
                                   len(records))
                self._emit_failing = True
                return handed
            f.unsettled.append(emitted)
            self._unsettled += emitted.count
            self._unsettled_bytes += emitted.size
            handed += len(group)
        if self._emit_failing and lines:
            _log.info("log tailer: the record sink accepts records again")
            self._emit_failing = False
        return handed

    def _record(self, f: FollowedFile, line: bytes, now: float) -> LogRecord:
        return LogRecord("logs", now, {"line": line.decode("utf-8", errors="replace"), "path": f.path,
                                       **self._fields})

    def _leftover(self, pending: bytes) -> list[bytes]:
        """The records of what was read and not yet emitted, now that no more will come after it."""
        if not pending:
            return []
        if self._multiline is None:
            return [pending]  # an unfinished line
        lines, _ = split_lines(pending if pending.endswith(b"\n") else pending + b"\n", self._max_line)
        return [record for record, _ in self._multiline.group(lines, flush=True)[0]]

    def _retire(self, f: FollowedFile, now: float) -> int:
        """Finishes a rotated or removed file read to its end; closes it once every line was delivered.

        Its unfinished last line is emitted first.

        Returns:
            The number of records emitted.
        """
        emitted = 0
        if f.pending:
            records = [(record, f.offset) for record in self._leftover(f.pending)]
            if self._emit(f, records, now) < len(records):
                return 0
            f.pending = b""
            emitted = len(records)
            self._settle(f)
        if not f.unsettled:
            self._files.close_file(f)
            _log.debug("log tailer: done with the rotated or removed file %s", f.path)
        return emitted

    # --- Delivery -------------------------------------------------------------------------------------

    def _on_settled(self, emitted: Emitted, delivered: bool) -> None:
        """The sink's callback: records the outcome, applied by the next poll (or now, once closed)."""
        emitted.outcome = delivered
        if delivered and self._backlog:
            self._wake()  # room for lines waiting in their files
        if self._closed:  # no poll will come: the late acknowledgement updates the saved positions itself
            with self._lock:
                self._settle_all()
                self._save_if_changed(force=True)

    def _changed(self) -> None:
        """The watch's callback: a followed directory changed, so lines may be waiting."""
        if self._has_room():
            self._wake()
        else:
            self._backlog = True  # no room now: read as soon as the sink settled some

    def _has_room(self) -> bool:
        """Whether the lines on their way leave room to read more."""
        return self._unsettled < self._max_unsettled and self._unsettled_bytes < self._max_bytes

    def _wake(self) -> None:
        """Queues one early poll on the scheduler (at most one at a time): lines wait and may be read now."""
        with self._wake_lock:
            if self._wake_queued or self._scheduler is None or self._closed:
                return
            self._wake_queued = True
        try:
            self._scheduler.submit(self._woken, name="log-tailer (lines waiting)")
        except (PcaError, RuntimeError):  # the workers are busy or shut down: the next tick reads them
            with self._wake_lock:
                self._wake_queued = False

    def _woken(self) -> None:
        with self._wake_lock:
            self._wake_queued = False
        self.poll()

    def _settle_all(self) -> None:
        for f in list(self._files.files.values()):
            self._settle(f)

    def _settle(self, f: FollowedFile) -> None:
        """Advances ``f``'s delivered offset past the lines the sink settled, oldest first.

        Lines that were dropped are read again from the last delivered line (the lines after them, still
        on their way, may then arrive twice).
        """
        while f.unsettled and f.unsettled[0].outcome is not None:
            first = f.unsettled[0]
            if not first.outcome:
                self._forget_unsettled(f)
                if not self._closed:
                    _log.info("log tailer: lines of %s were dropped before delivery; reading them again from "
                              "offset %d", f.path, f.acked)
                    f.offset, f.pending = f.acked, b""
                return
            f.unsettled.popleft()
            self._unsettled -= first.count
            self._unsettled_bytes -= first.size
            f.acked = first.end
            self._files.dirty = True

    def _forget_unsettled(self, f: FollowedFile) -> None:
        """Stops waiting for the sink's word on ``f``'s lines on their way."""
        self._unsettled -= sum(emitted.count for emitted in f.unsettled)
        self._unsettled_bytes -= sum(emitted.size for emitted in f.unsettled)
        f.unsettled.clear()

    # --- Positions ------------------------------------------------------------------------------------

    def _save_if_changed(self, *, force: bool = False) -> None:
        """Writes the position file when something in it changed (never before the first poll).

        Not within ``save_interval`` of the last write, unless ``force``: a crash then reads again at
        most that long's delivered lines, and a busy file costs no write and fsyncs per poll.
        """
        path = self._position_file
        if path is None or not self._files.dirty or not self._polls:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < self._save_interval:
            return
        self._saved_at = now
        try:
            save_positions(path, self._files.patterns, self._files.positions())
        except OSError as exc:
            self._errors.report(str(path), "save positions to", exc)
            return
        self._errors.recovered(str(path))
        self._files.dirty = False
