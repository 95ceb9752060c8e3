"""The lifecycle's serial lane: jobs run one at a time, in order, on a thread of the lane's own."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

_log = logging.getLogger(__name__)

LANE_LIMIT = 10_000
"""Jobs waiting at most; beyond it, jobs posted as not essential (member extensions) are dropped, logged."""


class Lane:
    """Runs posted jobs one at a time, in the order posted, on one thread of its own.

    Its own thread rather than the scheduler's workers: a job may block for as long as an extension
    script runs (up to its timeout), and on the shared pool it would hold a worker that the outbox, the
    artifact updates and the log publishers need. One thread for the lane's lifetime, however many jobs
    it runs. A job that raises is logged and the next one runs.

    Args:
        name: the thread's name.
    """

    def __init__(self, name: str = "pca-lifecycle") -> None:
        self._jobs: deque[tuple[str, Callable[[], object]]] = deque()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._current: str | None = None
        self._stopped = False

    @property
    def current(self) -> str | None:
        """The name of the job running now, if any."""
        return self._current

    def start(self) -> None:
        """Starts the lane's thread; jobs posted before run now, in order."""
        self._thread.start()

    def post(self, name: str, job: Callable[[], object], *, essential: bool = True) -> None:
        """Queues ``job`` (``name`` is for the log); a full lane drops it unless it is essential.

        After :meth:`stop`, every job is dropped.
        """
        with self._cond:
            if self._stopped:
                _log.debug("lifecycle lane stopped: %s not run", name)
                return
            if not essential and len(self._jobs) >= LANE_LIMIT:
                _log.warning("lifecycle lane full: %s dropped", name)
                return
            self._jobs.append((name, job))
            self._cond.notify()

    def stop(self) -> None:
        """Drops the jobs still waiting and refuses new ones; the running job, if any, goes on. Idempotent."""
        with self._cond:
            dropped = [name for name, _ in self._jobs]
            self._jobs.clear()
            self._stopped = True
            self._cond.notify()
        if dropped:
            _log.info("stopping: %d lifecycle step(s) not run: %s", len(dropped), ", ".join(dropped[:10]))

    def join(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for the thread to end after :meth:`stop`; True if it has."""
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                name, job = self._jobs.popleft()
                self._current = name
            try:
                job()
            except Exception:
                _log.exception("lifecycle step %s failed", name)
            finally:
                self._current = None
