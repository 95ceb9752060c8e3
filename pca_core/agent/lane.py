"""The lifecycle's serial lane: jobs run one at a time, in order, on the core scheduler's workers."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from pca_core.runtime.scheduler import Scheduler

_log = logging.getLogger(__name__)

LANE_LIMIT = 10_000
"""Jobs waiting at most; beyond it, jobs posted as not essential (member extensions) are dropped, logged."""


class Lane:
    """Runs posted jobs one at a time, in the order posted, on the scheduler's workers.

    No thread of its own: a drain is queued on the scheduler when the first job arrives and runs until the
    lane is empty. A job that raises is logged and the next one runs.

    Args:
        scheduler: runs the drains.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._jobs: deque[tuple[str, Callable[[], object]]] = deque()
        self._lock = threading.Lock()
        self._running = False

    def post(self, name: str, job: Callable[[], object], *, essential: bool = True) -> None:
        """Queues ``job`` (``name`` is for the log); a full lane drops it unless it is essential."""
        with self._lock:
            if not essential and len(self._jobs) >= LANE_LIMIT:
                _log.warning("lifecycle lane full: %s dropped", name)
                return
            self._jobs.append((name, job))
            if self._running:
                return
            self._running = True
        # call_later, not submit: it never raises SchedulerBusy; the timer queues it when there is room.
        self._scheduler.call_later(0, self._drain, name="lifecycle")

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._running = False
                    return
                name, job = self._jobs.popleft()
            try:
                job()
            except Exception:
                _log.exception("lifecycle step %s failed", name)
