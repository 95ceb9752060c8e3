"""A scheduler for periodic, delayed and immediate tasks on a fixed set of threads.

One timer thread and a fixed pool of worker threads are started together; their number never changes
while the scheduler runs, however many tasks it runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from pca_core.api.errors import PcaError

__all__ = ["Scheduler", "SchedulerBusy", "Task"]

logger = logging.getLogger(__name__)


class SchedulerBusy(PcaError):
    """The scheduler's work queue is full, so the task was not accepted."""


class Task:
    """A unit of work registered with a :class:`Scheduler`.

    Attributes:
        name: the name the task was given; log messages about the task use it.
    """

    def __init__(self, name: str, fn: Callable[[], object], interval: float | None, due: float) -> None:
        self.name = name
        self._fn = fn
        self._interval = interval
        self._due = due  # the tick the task waits for, or the one it was last fired for
        # Set while a periodic tick waits for or holds a worker: a task is never queued twice, so the
        # ticks falling due meanwhile are skipped, counted from here instead of by waking the timer.
        self._fired_at: float | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._running = False
        self._runs = 0
        self._skipped = 0

    def __repr__(self) -> str:
        return f"<Task {self.name!r} runs={self._runs} skipped={self.skipped} cancelled={self._cancelled}>"

    def cancel(self) -> None:
        """Prevents the task from starting again; a run already in progress finishes. Idempotent."""
        with self._lock:
            self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether the task was cancelled, by :meth:`cancel` or by the scheduler's shutdown."""
        return self._cancelled

    @property
    def runs(self) -> int:
        """The number of runs that have finished, whether they returned or raised."""
        return self._runs

    @property
    def skipped(self) -> int:
        """The number of ticks of a periodic task dropped because the previous one had not finished."""
        with self._lock:
            fired_at = self._fired_at
            if fired_at is None or self._cancelled:
                return self._skipped
            now = time.monotonic()
            return self._skipped + self._ticks_until(now) - self._ticks_until(fired_at)

    @property
    def running(self) -> bool:
        """Whether the task's function is executing now."""
        return self._running

    def _ticks_until(self, moment: float) -> int:
        assert self._interval is not None
        return max(0, math.floor((moment - self._due) / self._interval))

    def _rearm(self, now: float) -> None:
        """Counts the ticks skipped since the task was fired and moves it to its next future tick."""
        assert self._interval is not None and self._fired_at is not None
        with self._lock:
            ticks = self._ticks_until(now)
            self._skipped += ticks - self._ticks_until(self._fired_at)
            due = self._due + (ticks + 1) * self._interval
            self._due = due if due > now else due + self._interval  # float rounding
            self._fired_at = None

    def _run(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._running = True
        try:
            self._fn()
        except BaseException:  # a task must not be able to end a worker thread
            logger.exception("scheduled task %r raised", self.name)
        finally:
            with self._lock:
                self._running = False
                self._runs += 1


class Scheduler:
    """Runs tasks periodically, after a delay or at once, on one timer thread and a fixed worker pool.

    Args:
        workers: the number of worker threads; tasks run on them, at most this many at a time.
        queue_size: how many due tasks may wait for a free worker.

    Raises:
        ValueError: ``workers`` or ``queue_size`` is less than 1.
    """

    def __init__(self, workers: int = 4, *, queue_size: int = 256) -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError(f"workers and queue_size must be at least 1, got {workers} and {queue_size}")
        self._workers = workers
        self._queue: queue.Queue[Task | None] = queue.Queue(maxsize=queue_size)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        # Due tasks the timer could not queue yet: it must never block on a full queue, so it retries
        # whenever a worker takes an item and frees a slot.
        self._ready: deque[Task] = deque()
        self._threads: tuple[threading.Thread, ...] = ()
        self._started = False
        self._stopping = False

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The scheduler's own threads (empty before :meth:`start`): the timer first, then the workers."""
        return self._threads

    def start(self) -> None:
        """Starts the timer thread and all worker threads.

        Raises:
            RuntimeError: the scheduler was already started or has been shut down.
        """
        with self._cond:
            if self._started or self._stopping:
                raise RuntimeError("the scheduler can be started only once")
            self._started = True
            timer = threading.Thread(target=self._timer_loop, name="pca-timer", daemon=True)
            workers = [
                threading.Thread(target=self._worker_loop, name=f"pca-worker-{i}", daemon=True)
                for i in range(self._workers)
            ]
            self._threads = (timer, *workers)
            for thread in self._threads:
                thread.start()

    def every(
        self, interval: float, fn: Callable[[], object], *, name: str, initial_delay: float | None = None
    ) -> Task:
        """Runs ``fn`` every ``interval`` seconds at a fixed rate, never two runs of it at once.

        A tick that falls due while the previous one is still waiting for room in the work queue, queued
        or running is skipped. When the scheduler falls more than an interval behind, it resumes at the
        next future tick rather than catching up.

        Args:
            interval: seconds between ticks; must be positive.
            fn: the function to run.
            name: the task's name, used in log messages.
            initial_delay: seconds until the first tick; ``None`` means ``interval``.

        Returns:
            The task, which can be cancelled.

        Raises:
            ValueError: ``interval`` is not positive or ``initial_delay`` is negative.
            RuntimeError: the scheduler has been shut down.
        """
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        return self._schedule(name, fn, interval, interval if initial_delay is None else initial_delay)

    def call_later(self, delay: float, fn: Callable[[], object], *, name: str) -> Task:
        """Runs ``fn`` once, ``delay`` seconds from now.

        Raises:
            ValueError: ``delay`` is negative.
            RuntimeError: the scheduler has been shut down.
        """
        return self._schedule(name, fn, None, delay)

    def submit(self, fn: Callable[[], object], *, name: str) -> Task:
        """Runs ``fn`` once, as soon as a worker is free.

        Raises:
            SchedulerBusy: the work queue is full; the call never waits for room.
            RuntimeError: the scheduler has been shut down.
        """
        task = Task(name, fn, None, time.monotonic())
        with self._cond:
            self._check_open()
            try:
                self._queue.put_nowait(task)
            except queue.Full:
                raise SchedulerBusy(
                    f"task {name!r} rejected: {self._queue.maxsize} tasks are already waiting for a worker"
                ) from None
        return task

    def shutdown(self, timeout: float) -> bool:
        """Stops the scheduler: cancels every task not yet started and lets runs in progress finish.

        Idempotent. Threads still running after ``timeout`` are daemon threads, so they cannot keep the
        process alive.

        Args:
            timeout: seconds to wait, in total, for the scheduler's threads to end.

        Returns:
            True if every scheduler thread has ended, False if some are still running.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            first = not self._stopping
            self._stopping = True
            pending = [task for _, _, task in self._heap] + list(self._ready)
            self._heap.clear()
            self._ready.clear()
            self._cond.notify_all()
        if first:
            for task in pending:
                task.cancel()
            # No producer can add to the queue any more, so once drained the stop signal fits.
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item.cancel()
            if self._threads:
                self._queue.put_nowait(None)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _check_open(self) -> None:
        if self._stopping:
            raise RuntimeError("the scheduler has been shut down")

    def _schedule(self, name: str, fn: Callable[[], object], interval: float | None, delay: float) -> Task:
        if not delay >= 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        task = Task(name, fn, interval, time.monotonic() + delay)
        with self._cond:
            self._check_open()
            self._push(task)
        return task

    def _push(self, task: Task) -> None:
        heapq.heappush(self._heap, (task._due, next(self._seq), task))
        self._cond.notify()

    def _timer_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    task = heapq.heappop(self._heap)[2]
                    if not task.cancelled:
                        if task._interval is not None:
                            task._fired_at = now
                        self._ready.append(task)
                self._flush_ready()
                timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                if timeout is None or timeout > 0:
                    self._cond.wait(timeout)

    def _flush_ready(self) -> None:
        while self._ready:
            try:
                self._queue.put_nowait(self._ready[0])
            except queue.Full:
                return
            self._ready.popleft()

    def _worker_loop(self) -> None:
        while True:
            task = self._queue.get()
            if self._ready:
                with self._cond:
                    self._cond.notify()
            if task is None:
                self._queue.put_nowait(None)  # pass the stop signal on to the next worker
                return
            if self._stopping:  # shutdown is draining the queue: what it has not reached must not start
                task.cancel()
            task._run()
            if task._interval is not None:
                with self._cond:
                    if self._stopping:
                        task.cancel()
                    if not task.cancelled:
                        task._rearm(time.monotonic())
                        self._push(task)
