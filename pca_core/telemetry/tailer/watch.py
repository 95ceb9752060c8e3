"""Wakes the tailer as soon as a followed directory changes (Linux inotify), not at its next poll.

Polling stays the tailer's ground truth: a watch only brings the next poll forward, so a change it cannot
see (a pattern whose directory part is itself a glob, a directory that does not exist yet, a network file
system, a system without inotify) is still found by the periodic poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MIN_GAP", "DirectoryWatch", "watched_directories"]

_log = logging.getLogger("pca_core.telemetry.tailer")

MIN_GAP = 0.02
"""Seconds between two wake-ups at least: a busy file wakes the tailer 50 times a second at most (the
kernel merges what happens meanwhile), however often it is written to."""

_GLOB_CHARS = frozenset("*?[")
_JOIN_TIMEOUT = 5.0

try:  # Linux only; elsewhere the tailer polls
    from inotify_simple import INotify
    from inotify_simple import flags as _flags
except ImportError:  # pragma: no cover - only off Linux
    INotify = None  # type: ignore[assignment,misc]
    _MASK = _GONE = 0
else:
    _MASK = (_flags.MODIFY | _flags.CREATE | _flags.MOVED_TO | _flags.CLOSE_WRITE | _flags.DELETE_SELF
             | _flags.MOVE_SELF)
    _GONE = _flags.IGNORED  # the directory was removed or moved: watched again once it is back


def watched_directories(patterns: Iterable[str]) -> list[str]:
    """The directories to watch for ``patterns``: each one's directory, unless that is a glob itself."""
    directories: dict[str, None] = {}
    for pattern in patterns:
        directory = os.path.dirname(os.path.abspath(pattern))
        if not _GLOB_CHARS.intersection(directory):
            directories[directory] = None
    return list(directories)


class DirectoryWatch:
    """Calls ``on_change`` on a thread of its own when a watched directory or a file in it changes.

    The thread, ``pca-tailer-watch``, calls it at most once every :data:`MIN_GAP` seconds. Use
    :meth:`start`, which returns None where inotify is not available.

    Args:
        directories: the directories to watch; one that does not exist yet is watched from the first
            :meth:`refresh` that finds it.
        on_change: called on the watch's thread; it must be quick and must not raise.
    """

    def __init__(self, inotify: Any, directories: Iterable[str], on_change: Callable[[], object]) -> None:
        self._inotify = inotify
        self._wanted = tuple(directories)
        self._watched: dict[int, str] = {}  # watch descriptor → directory
        self._lock = threading.Lock()  # guards _watched
        self._on_change = on_change
        self._stop_r, self._stop_w = os.pipe()
        self._failed = False
        self._closed = False
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="pca-tailer-watch", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, directories: Iterable[str], on_change: Callable[[], object]) -> DirectoryWatch | None:
        """A running watch of ``directories``, or None when there is none to watch or no inotify here."""
        directories = list(directories)
        if INotify is None or not directories:
            return None
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:  # e.g. fs.inotify.max_user_instances reached
            _log.info("log tailer: cannot watch files for changes (%s); polling only", exc)
            return None
        return cls(inotify, directories, on_change)

    @property
    def directories(self) -> list[str]:
        """The directories watched now."""
        with self._lock:
            return sorted(self._watched.values())

    def refresh(self) -> None:
        """Watches the wanted directories that are not watched yet (they may have appeared since)."""
        with self._lock:
            if self._closed:
                return
            missing = [d for d in self._wanted if d not in self._watched.values()]
            for directory in missing:
                try:
                    self._watched[self._inotify.add_watch(directory, _MASK)] = directory
                except FileNotFoundError:
                    continue  # polled until it exists
                except OSError as exc:  # e.g. fs.inotify.max_user_watches reached: polled
                    if not self._failed:
                        _log.info("log tailer: cannot watch %s for changes (%s); polling it", directory, exc)
                        self._failed = True

    def close(self) -> None:
        """Stops the thread and releases the watch; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT)
        if not self._thread.is_alive():
            for fd in (self._stop_r, self._stop_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                self._inotify.close()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._inotify.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            if any(fd == self._stop_r for fd, _ in poller.poll()):
                return
            try:
                events = self._inotify.read(timeout=0)
            except OSError:  # closed under us: the tailer is closing
                return
            gone = {event.wd for event in events if event.mask & _GONE}
            if gone:
                with self._lock:
                    for wd in gone:
                        self._watched.pop(wd, None)
            try:
                self._on_change()
            except Exception:  # a bug in the callback must not end the watch
                _log.exception("log tailer: the change callback raised")
            if select.select([self._stop_r], [], [], MIN_GAP)[0]:  # what changes meanwhile waits
                return
