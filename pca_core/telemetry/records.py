"""Records on their way to the log publishers: buffered per publisher, retried, bounded.

Producers (the health sampler, the log tailer) hand records to :meth:`RecordSink.emit`, which never
blocks. A periodic task on the core scheduler delivers each publisher's records, oldest first, in batches;
the sink has no thread of its own.

- **Routing**: a publisher receives the records whose stream its ``config.streams`` names, in the order
  they were emitted.
- **Retry without loss**: a batch leaves a publisher's buffer only once ``publish`` returned. A publisher
  that raises keeps its records and is retried with a growing backoff (from the flush interval up to
  30 seconds); the other publishers are flushed as usual.
- **Bounded**: each publisher holds at most ``max_buffered`` records. When its sink stays down long enough
  to fill that, the oldest records are dropped and counted, and one warning per overflow episode says how
  many were lost. Logs and health statistics are telemetry; the status events have their own durable
  outbox.
- **One flush at a time**: a periodic flush that falls due while another flush runs is skipped.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from pca_core.api.errors import LogPublishError, PcaError
from pca_core.api.log_publisher import LogPublisher, LogRecord, StreamDefinition
from pca_core.runtime.scheduler import Scheduler, Task

__all__ = ["RecordSink"]

_log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
"""Seconds between retries of a failing publisher at most (unless the flush interval is longer)."""

_EXPECTED_FAILURES = (PcaError, OSError, TimeoutError)


class _Buffer:
    """One publisher's records, with what the sink knows of its health.

    Records are numbered as they are buffered, so that a delivered batch can be removed exactly even when
    an overflow dropped some of its records while it was being published.
    """

    def __init__(self, name: str, publisher: LogPublisher) -> None:
        self.name = name
        self.publisher = publisher
        self.streams = frozenset(publisher.config.streams)
        self.entries: deque[tuple[int, LogRecord]] = deque()
        self.next_seq = 0
        self.inflight_last = -1  # number of the last record of the batch being published; -1: none
        self.dropped_inflight = 0  # records of that batch dropped meanwhile: lost only if it fails
        self.overflowing = False  # an overflow episode is going on
        self.episode_dropped = 0
        self.dropped_total = 0
        # Touched only by the flush that holds the flush lock.
        self.opened = False  # open() returned: the publisher has its stream definitions
        self.failures = 0  # consecutive failed publish calls
        self.retry_at = 0.0  # monotonic time before which the periodic flush leaves it alone


class RecordSink:
    """Buffers records per log publisher and delivers them from a periodic task on the core scheduler.

    Args:
        publishers: the loaded log publishers; each receives the streams its ``config.streams`` names.
        streams: the definitions of the streams records are emitted on; each publisher is opened with
            those it receives.
        scheduler: the core scheduler, which runs the periodic flush.
        flush_interval: seconds between periodic flushes, and the first retry delay of a failing publisher.
        max_buffered: records held per publisher at most; beyond that the oldest are dropped.
        batch_size: records per ``publish`` call at most.
        publish_timeout: seconds a ``publish`` call may take, passed to the publisher.

    Raises:
        ValueError: an interval, size or timeout is not positive.
    """

    def __init__(self, publishers: Sequence[LogPublisher], scheduler: Scheduler, *,
                 streams: Sequence[StreamDefinition] = (), flush_interval: float = 1.0,
                 max_buffered: int = 10_000, batch_size: int = 500,
                 publish_timeout: float = 10.0) -> None:
        if not (flush_interval > 0 and publish_timeout > 0 and max_buffered >= 1 and batch_size >= 1):
            raise ValueError("flush_interval and publish_timeout must be positive, max_buffered and "
                             f"batch_size at least 1; got {flush_interval}, {publish_timeout}, "
                             f"{max_buffered}, {batch_size}")
        self._buffers = [_Buffer(f"{p.config.plugin}[{i}]", p) for i, p in enumerate(publishers)]
        self._streams = tuple(streams)
        self._scheduler = scheduler
        self._interval = flush_interval
        self._max_buffered = max_buffered
        self._batch_size = batch_size
        self._publish_timeout = publish_timeout
        self._lock = threading.Lock()  # guards the buffers' records and counters; held only briefly
        self._flushing = threading.Lock()  # held by the one flush that may run
        self._task: Task | None = None
        self._closed = False

    # --- Producers ---------------------------------------------------------------------------------------

    def emit(self, records: Sequence[LogRecord]) -> None:
        """Buffers ``records`` for the publishers of their streams. Never blocks; thread safe.

        Records of a stream no publisher receives are discarded.

        Raises:
            RuntimeError: the sink has been closed (a producer may then keep its place and retry later).
        """
        overflowed: list[_Buffer] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the record sink is closed")
            for buffer in self._buffers:
                was_overflowing = buffer.overflowing
                for record in records:
                    if record.stream in buffer.streams:
                        self._append(buffer, record)
                if buffer.overflowing and not was_overflowing:
                    overflowed.append(buffer)
        for buffer in overflowed:  # logged outside the lock: a slow log handler must not block producers
            _log.info("log publisher %s: %d records buffered, the most it holds; dropping the oldest until "
                      "it catches up", buffer.name, self._max_buffered)

    def _append(self, buffer: _Buffer, record: LogRecord) -> None:
        if len(buffer.entries) >= self._max_buffered:
            seq, _ = buffer.entries.popleft()
            buffer.overflowing = True
            if seq <= buffer.inflight_last:
                buffer.dropped_inflight += 1
            else:
                buffer.episode_dropped += 1
                buffer.dropped_total += 1
        buffer.entries.append((buffer.next_seq, record))
        buffer.next_seq += 1

    # --- Observation -------------------------------------------------------------------------------------

    @property
    def pending(self) -> dict[str, int]:
        """Records buffered per publisher, named by plugin and position (``file[0]``)."""
        with self._lock:
            return {buffer.name: len(buffer.entries) for buffer in self._buffers}

    @property
    def dropped(self) -> dict[str, int]:
        """Records dropped by overflow since the sink was created, per publisher."""
        with self._lock:
            return {buffer.name: buffer.dropped_total for buffer in self._buffers}

    # --- Delivery ----------------------------------------------------------------------------------------

    def start(self) -> Task | None:
        """Starts the periodic flush on the scheduler; idempotent.

        Returns:
            The periodic task, or None when there is no publisher to flush.

        Raises:
            RuntimeError: the sink has been closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the record sink is closed")
            if self._task is None and self._buffers:
                self._task = self._scheduler.every(self._interval, self._periodic_flush, name="record sink")
            return self._task

    def flush(self, timeout: float | None = None) -> None:
        """Publishes what is buffered now, oldest first, batch by batch.

        Each publisher is tried once per call, backoff or not, until its records buffered when the call
        began are delivered or it fails; a failing publisher keeps its records and does not hold up the
        others. Waits for a flush already running to finish first (within ``timeout``; if that one is
        still running then, this call returns having done nothing).

        Args:
            timeout: seconds the call may take in all (each ``publish`` gets what is left); None means no
                limit beyond the publish timeout of each call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        acquired = self._flushing.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        if not acquired:
            return
        try:
            self._flush_all(deadline, honour_backoff=False)
        finally:
            self._flushing.release()

    def _periodic_flush(self) -> None:
        if not self._flushing.acquire(blocking=False):
            return  # a flush is running: never two at once
        try:
            self._flush_all(None, honour_backoff=True)
        finally:
            self._flushing.release()

    def _flush_all(self, deadline: float | None, *, honour_backoff: bool) -> None:
        for buffer in self._buffers:
            if honour_backoff and time.monotonic() < buffer.retry_at:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._drain(buffer, deadline)

    def _drain(self, buffer: _Buffer, deadline: float | None) -> None:
        """Delivers the records buffered when it began (later ones wait for the next flush)."""
        with self._lock:
            last_wanted = buffer.next_seq - 1
        while True:
            timeout = self._publish_timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    return
            with self._lock:
                entries = list(itertools.islice(
                    itertools.takewhile(lambda entry: entry[0] <= last_wanted, buffer.entries),
                    self._batch_size))
                if not entries:
                    break
                buffer.inflight_last = entries[-1][0]
            batch = [record for _, record in entries]
            try:
                self._open(buffer, timeout)
                accepted = buffer.publisher.publish(batch, timeout=timeout)
                if isinstance(accepted, bool) or not isinstance(accepted, int) \
                        or not 0 <= accepted <= len(batch):
                    raise LogPublishError(buffer.name, f"log publisher {buffer.name}: publish returned "
                                                       f"{accepted!r}, not a count from 0 to {len(batch)}")
                if not accepted:
                    raise LogPublishError(buffer.name, f"log publisher {buffer.name} accepted none of "
                                                       f"{len(batch)} records")
            except Exception as exc:
                # Any exception: a plugin's bug must not stop delivery to the other publishers.
                with self._lock:
                    buffer.inflight_last = -1
                    buffer.episode_dropped += buffer.dropped_inflight
                    buffer.dropped_total += buffer.dropped_inflight
                    buffer.dropped_inflight = 0
                    kept = len(buffer.entries)
                self._failed(buffer, exc, kept)
                return
            with self._lock:
                last_accepted = entries[accepted - 1][0]
                while buffer.entries and buffer.entries[0][0] <= last_accepted:
                    buffer.entries.popleft()
                buffer.inflight_last = -1
                buffer.dropped_inflight = 0  # dropped from the buffer, but delivered
            if buffer.failures:
                _log.info("log publisher %s delivers again, after %d failed attempts", buffer.name,
                          buffer.failures)
                buffer.failures = 0
                buffer.retry_at = 0.0
            if accepted < len(batch):
                return  # the sink takes no more for now: the rest waits for the next flush
        self._end_overflow(buffer)

    def _open(self, buffer: _Buffer, timeout: float) -> None:
        """Hands the publisher its stream definitions before its first batch (again after a failure)."""
        if buffer.opened:
            return
        buffer.publisher.open([s for s in self._streams if s.name in buffer.streams], timeout=timeout)
        buffer.opened = True

    def _failed(self, buffer: _Buffer, exc: Exception, kept: int) -> None:
        buffer.failures += 1
        delay = min(self._interval * 2 ** min(buffer.failures - 1, 32), max(self._interval, MAX_BACKOFF))
        buffer.retry_at = time.monotonic() + delay
        if buffer.failures == 1:
            _log.warning("log publisher %s failed: %s; keeping its %d records (at most %d, then the oldest "
                         "are dropped) and retrying", buffer.name, exc, kept, self._max_buffered,
                         exc_info=not isinstance(exc, _EXPECTED_FAILURES))
        else:
            _log.debug("log publisher %s: attempt %d failed: %s; %d records kept, next attempt in %.1f s",
                       buffer.name, buffer.failures, exc, kept, delay)

    def _end_overflow(self, buffer: _Buffer) -> None:
        """Closes an overflow episode once the publisher caught up, with its one warning."""
        with self._lock:
            if not buffer.overflowing:
                return
            dropped = buffer.episode_dropped
            buffer.overflowing = False
            buffer.episode_dropped = 0
        if dropped:
            _log.warning("log publisher %s: %d records were dropped, the oldest first, because its buffer of "
                         "%d was full", buffer.name, dropped, self._max_buffered)

    # --- Shutdown ----------------------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Stops the periodic flush, delivers what is buffered, then flushes and closes each publisher.

        Idempotent. Records still undelivered when the time is up are lost, and a warning counts them.
        The time limit holds as long as each publisher honours the timeout it is given.

        Args:
            timeout: seconds the whole close may take.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._task is not None:
            self._task.cancel()
        if self._flushing.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            try:
                self._flush_all(deadline, honour_backoff=False)
            finally:
                self._flushing.release()
        else:
            _log.warning("record sink: a flush still running at shutdown did not finish in time")
        for buffer in self._buffers:
            try:
                buffer.publisher.flush(max(deadline - time.monotonic(), 0.0))
                buffer.publisher.close(max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                _log.warning("closing log publisher %s: %s", buffer.name, exc,
                             exc_info=not isinstance(exc, _EXPECTED_FAILURES))
            self._end_overflow(buffer)
            with self._lock:
                left = len(buffer.entries)
            if left:
                _log.warning("log publisher %s: %d records could not be delivered before shutdown and are "
                             "lost", buffer.name, left)
