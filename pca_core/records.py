"""Records on their way to the log publishers: buffered per publisher, retried, bounded.

Producers (the health sampler, the log tailer) call :meth:`RecordSink.emit`, which never blocks; a
periodic task on the core scheduler delivers each publisher's records, oldest first, in batches. A
publisher that fails keeps its batch and gets it again on the next flush; the others are not held up.
A publisher whose sink stays down long enough to fill its buffer loses the oldest records, counted and
logged: logs and health statistics are telemetry (status events have the durable outbox).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence

from pca_core.errors import PcaError
from pca_core.log_publisher import LogPublisher, LogRecord
from pca_core.scheduler import Scheduler, Task

_log = logging.getLogger(__name__)


class _Queue:
    """One publisher's buffered records and its health."""

    def __init__(self, name: str, publisher: LogPublisher, max_buffered: int) -> None:
        self.name = name
        self.publisher = publisher
        self.records: deque[LogRecord] = deque()
        self.max_buffered = max_buffered
        self.dropped = 0  # in the current overflow episode
        self.failing = False


class RecordSink:
    """Delivers records to the publishers whose ``streams`` name the record's stream.

    Args:
        publishers: the loaded log publishers.
        scheduler: the core scheduler, whose periodic task flushes.
        flush_interval: seconds between flushes.
        max_buffered: records held per publisher at most.
        batch_size: records per ``publish`` call at most.
        publish_timeout: seconds a ``publish`` call may take.
    """

    def __init__(self, publishers: Sequence[LogPublisher], scheduler: Scheduler, *,
                 flush_interval: float = 1.0, max_buffered: int = 10_000, batch_size: int = 500,
                 publish_timeout: float = 10.0) -> None:
        self._queues = [_Queue(f"{p.config.plugin}[{i}]", p, max_buffered) for i, p in enumerate(publishers)]
        self._scheduler = scheduler
        self._interval = flush_interval
        self._batch_size = batch_size
        self._timeout = publish_timeout
        self._lock = threading.Lock()  # guards the buffers
        self._flushing = threading.Lock()  # never two flushes at once
        self._task: Task | None = None

    def start(self) -> None:
        """Starts the periodic flush (nothing to do without publishers)."""
        if self._queues and self._task is None:
            self._task = self._scheduler.every(self._interval, self.flush, name="record sink")

    def emit(self, records: Sequence[LogRecord]) -> None:
        """Buffers ``records`` for the publishers that want their streams; never blocks."""
        with self._lock:
            for queue in self._queues:
                streams = queue.publisher.config.streams
                for record in records:
                    if record.stream not in streams:
                        continue
                    if len(queue.records) >= queue.max_buffered:
                        queue.records.popleft()
                        if queue.dropped == 0:
                            _log.warning("publisher %s: buffer full (%d records); dropping the oldest",
                                         queue.name, queue.max_buffered)
                        queue.dropped += 1
                    queue.records.append(record)

    @property
    def pending(self) -> dict[str, int]:
        """Records buffered per publisher."""
        with self._lock:
            return {queue.name: len(queue.records) for queue in self._queues}

    def flush(self) -> None:
        """Publishes what is buffered, batch by batch, until each buffer is empty or its publisher fails."""
        if not self._flushing.acquire(blocking=False):
            return
        try:
            for queue in self._queues:
                self._flush_one(queue)
        finally:
            self._flushing.release()

    def _flush_one(self, queue: _Queue) -> None:
        while True:
            with self._lock:
                batch = list(queue.records)[: self._batch_size]
            if not batch:
                return
            try:
                queue.publisher.publish(batch, timeout=self._timeout)
            except (PcaError, OSError, TimeoutError) as exc:
                if not queue.failing:
                    _log.warning("publisher %s failed (%s); keeping %d records to retry", queue.name, exc,
                                 len(queue.records))
                queue.failing = True
                return
            with self._lock:
                # Drop what was delivered; records dropped by an overflow meanwhile shift the front.
                delivered = 0
                while queue.records and delivered < len(batch) and queue.records[0] is batch[delivered]:
                    queue.records.popleft()
                    delivered += 1
                if queue.dropped:
                    _log.warning("publisher %s: %d records were dropped while it was down", queue.name,
                                 queue.dropped)
                    queue.dropped = 0
            if queue.failing:
                _log.info("publisher %s recovered", queue.name)
                queue.failing = False

    def close(self, timeout: float) -> None:
        """Stops the periodic flush and delivers what is buffered, within ``timeout`` per publish."""
        if self._task is not None:
            self._task.cancel()
        self._timeout = min(self._timeout, max(timeout, 0.1))
        self.flush()
