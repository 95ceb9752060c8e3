"""Records on their way to the log publishers: buffered per publisher, retried, bounded, acknowledged.

Producers (the health sampler, the log tailer) hand records to :meth:`RecordSink.emit`, which never
blocks. Each publisher's records are delivered by a periodic task of its own on the core scheduler, oldest
first, in batches; the sink has no thread of its own.

- **Per publisher**: ``batch_size``, ``flush_interval``, ``max_buffered`` and ``publish_timeout`` come from
  each publisher's :class:`~pca_core.api.PublisherConfig`. One delivery to a publisher runs at a time; a
  slow or failing publisher holds up no other.
- **Under load**: a publisher with a full batch (``batch_size`` records) buffered gets a delivery at once,
  on a scheduler worker, instead of at its next flush tick, and a running delivery goes on by itself
  while what arrived meanwhile fills a batch (no second task is queued beside it); a trickle waits for
  the tick.
- **Routing**: a publisher receives the records whose stream its ``config.streams`` names, in the order
  they were emitted. It is opened with those streams' definitions before its first batch, and again before
  the next batch after one failed (a receiver that restarted may have forgotten them).
- **At least once**: a record leaves a publisher's buffer only once ``publish`` counted it as accepted
  (the first N records of the batch); the rest is offered again. A publisher that raises or accepts
  nothing keeps its records and is retried after a delay from :class:`~pca_core.api.Backoff` (from its
  flush interval up to 30 seconds, with jitter).
- **Delivery notification**: a producer that passes ``on_settled`` to :meth:`RecordSink.emit` is told,
  once, when each record of the call was accepted by every publisher of its stream (True) or dropped by
  an overflow or at shutdown (False, when at least one was).
- **Bounded**: each publisher holds at most ``max_buffered`` records. When its sink stays down long enough
  to fill that, the oldest records are dropped and counted, and one warning per overflow episode says how
  many were lost.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence

from pca_core.api.errors import LogPublishError, PcaError
from pca_core.api.log_publisher import LogPublisher, LogRecord, StreamDefinition
from pca_core.runtime.scheduler import Scheduler, SchedulerBusy, Task
from pca_core.telemetry.buffer import OnSettled, PublisherBuffer, Ticket, notify

__all__ = ["OnSettled", "RecordSink"]

_log = logging.getLogger(__name__)

_EXPECTED_FAILURES = (PcaError, OSError, TimeoutError)


class RecordSink:
    """Buffers records per log publisher and delivers them from periodic tasks on the core scheduler.

    Args:
        publishers: the loaded log publishers; each receives the streams its ``config.streams`` names,
            batched as its ``config`` says.
        scheduler: the core scheduler, which runs the deliveries.
        streams: the definitions of the streams records are emitted on; each publisher is opened with
            those it receives.

    Raises:
        ValueError: a publisher's batching settings are out of range (see :meth:`PublisherConfig.issues`).
    """

    def __init__(self, publishers: Sequence[LogPublisher], scheduler: Scheduler, *,
                 streams: Sequence[StreamDefinition] = ()) -> None:
        for i, publisher in enumerate(publishers):
            issues = [f"{issue.key}: {issue.expected}" for issue in publisher.config.issues()]
            if issues:
                raise ValueError(f"log publisher {publisher.config.plugin}[{i}]: {'; '.join(issues)}")
        self._buffers = [PublisherBuffer(f"{p.config.plugin}[{i}]", p) for i, p in enumerate(publishers)]
        self._streams = tuple(streams)
        self._scheduler = scheduler
        self._lock = threading.Lock()  # guards the buffers' records and counters; held only briefly
        self._tasks: list[Task] = []
        self._closed = False

    # --- Producers ---------------------------------------------------------------------------------------

    def emit(self, records: Sequence[LogRecord], *, on_settled: OnSettled | None = None) -> None:
        """Buffers ``records`` for the publishers of their streams. Never blocks; thread safe.

        Records of a stream no publisher receives are discarded (and count as accepted).

        Args:
            records: the records, oldest first.
            on_settled: called once, when each record of the call was either accepted by every publisher
                of its stream or dropped: with ``True`` when none was dropped, else ``False``. It may be
                called before ``emit`` returns, on the emitting thread, or later on a delivery's thread;
                it must be quick and must not raise. Not called when ``emit`` raises.

        Raises:
            RuntimeError: the sink has been closed (a producer may then keep its place and retry later).
        """
        done: list[Ticket] = []
        overflowed: list[PublisherBuffer] = []
        full: list[PublisherBuffer] = []
        ticket = Ticket(on_settled) if on_settled is not None else None
        with self._lock:
            if self._closed:
                raise RuntimeError("the record sink is closed")
            for buffer in self._buffers:
                was_overflowing = buffer.overflowing
                for record in records:
                    if record.stream in buffer.streams:
                        if ticket is not None:
                            ticket.add()
                        buffer.append(record, ticket, done)
                if buffer.overflowing and not was_overflowing:
                    overflowed.append(buffer)
                if self._claim_kick(buffer):
                    full.append(buffer)
            if ticket is not None:
                ticket.settle(lost=False, done=done)  # the count emit held while adding
        for buffer in overflowed:  # logged outside the lock: a slow log handler must not block producers
            _log.info("log publisher %s: %d records buffered, the most it holds; dropping the oldest until "
                      "it catches up", buffer.name, buffer.max_buffered)
        for buffer in full:
            self._kick(buffer)
        notify(done)

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

    @property
    def published(self) -> dict[str, int]:
        """Records each publisher accepted since the sink was created."""
        with self._lock:
            return {buffer.name: buffer.published_total for buffer in self._buffers}

    def capacity(self, stream: str) -> int:
        """The fewest records any publisher of ``stream`` buffers (``max_buffered``); 0 when none takes it."""
        sizes = [buffer.max_buffered for buffer in self._buffers if stream in buffer.streams]
        return min(sizes, default=0)

    # --- Delivery ----------------------------------------------------------------------------------------

    def start(self) -> list[Task]:
        """Starts each publisher's periodic delivery, every ``flush_interval`` seconds; idempotent.

        Returns:
            The periodic tasks, one per publisher.

        Raises:
            RuntimeError: the sink has been closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the record sink is closed")
            if not self._tasks:
                self._tasks = [
                    self._scheduler.every(buffer.flush_interval, functools.partial(self._periodic, buffer),
                                          name=f"record sink {buffer.name}")
                    for buffer in self._buffers
                ]
            return list(self._tasks)

    def flush(self, timeout: float | None = None) -> None:
        """Publishes what is buffered now, oldest first, batch by batch, to each publisher in turn.

        Each publisher is tried once per call, backoff or not, until its records buffered when the call
        began are delivered or it fails; a failing publisher keeps its records and does not hold up the
        others. A delivery to a publisher already running is waited for (within ``timeout``; if it is
        still running then, that publisher is left to it).

        Args:
            timeout: seconds the call may take in all (each ``publish`` gets what is left, at most its
                publish timeout); None means no limit beyond the publish timeout of each call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._deliver_all(deadline)

    def _deliver_all(self, deadline: float | None) -> bool:
        """Delivers to every publisher in turn; False when one was busy until the deadline."""
        finished = True
        for buffer in self._buffers:
            wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not buffer.delivering.acquire(timeout=wait):
                finished = False
                continue
            try:
                self._drain(buffer, deadline)
            finally:
                buffer.delivering.release()
        return finished

    def _periodic(self, buffer: PublisherBuffer) -> None:
        """Delivers what is buffered, and goes on while what arrived meanwhile fills a batch."""
        if time.monotonic() < buffer.retry_at:
            return  # backing off after a failure
        while True:
            if not buffer.delivering.acquire(blocking=False):
                return  # a delivery is running: never two at once; it goes on if a batch is full
            try:
                self._drain(buffer, None)
            finally:
                buffer.delivering.release()
            with self._lock:
                if buffer.kicked or not self._batch_waits(buffer):
                    return  # nothing to go on with, or a queued delivery will

    def _batch_waits(self, buffer: PublisherBuffer) -> bool:
        """Whether a full batch waits in ``buffer`` and may go now.

        That is, the periodic deliveries started, the sink is open and the publisher is not backing off
        after a failure. Called with the sink's lock held.
        """
        return (bool(self._tasks) and not self._closed and len(buffer.entries) >= buffer.batch_size
                and time.monotonic() >= buffer.retry_at)

    def _claim_kick(self, buffer: PublisherBuffer) -> bool:
        """Whether ``emit`` should queue a delivery of a full batch; if so, marks one queued.

        Not when one is queued already, nor while a delivery runs: that one takes the batch itself when
        it ends (see :meth:`_periodic`). Called with the sink's lock held.
        """
        if buffer.kicked or buffer.delivering.locked() or not self._batch_waits(buffer):
            return False
        buffer.kicked = True
        return True

    def _kick(self, buffer: PublisherBuffer) -> None:
        """Delivers ``buffer``'s full batch on a scheduler worker now, not at its next flush tick."""
        try:
            self._scheduler.submit(functools.partial(self._kicked, buffer),
                                   name=f"record sink {buffer.name} (full batch)")
        except (SchedulerBusy, RuntimeError):  # the workers are busy or gone: the next tick delivers it
            with self._lock:
                buffer.kicked = False

    def _kicked(self, buffer: PublisherBuffer) -> None:
        with self._lock:
            buffer.kicked = False
        self._periodic(buffer)

    def _drain(self, buffer: PublisherBuffer, deadline: float | None) -> None:
        """Delivers the records buffered when it began (later ones wait for the next delivery)."""
        with self._lock:
            last_wanted = buffer.next_seq - 1
        while True:
            timeout = buffer.publish_timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    return
            with self._lock:
                entries = buffer.take(last_wanted)
            if not entries:
                break
            accepted, error = self._publish(buffer, [record for _, record, _ in entries], timeout)
            done: list[Ticket] = []
            with self._lock:
                buffer.settle_batch(entries, accepted, done)
                kept = len(buffer.entries)
            notify(done)
            if error is not None:
                self._failed(buffer, error, kept)
                return
            if buffer.failures:
                _log.info("log publisher %s delivers again, after %d failed attempts", buffer.name,
                          buffer.failures)
            buffer.failures = 0
            buffer.retry_at = 0.0
            buffer.backoff.reset()
            if accepted < len(entries):
                return  # the sink takes no more for now: the rest waits for the next delivery
        self._end_overflow(buffer)

    def _publish(self, buffer: PublisherBuffer, batch: list[LogRecord],
                 timeout: float) -> tuple[int, Exception | None]:
        """Opens the publisher if needed and publishes ``batch``; returns (accepted, why none was)."""
        name = buffer.name
        try:
            if not buffer.opened:
                buffer.publisher.open([s for s in self._streams if s.name in buffer.streams],
                                      timeout=timeout)
                buffer.opened = True
            accepted = buffer.publisher.publish(batch, timeout=timeout)
        except Exception as exc:  # any exception: a plugin's bug must not stop delivery to the others
            return 0, exc
        if isinstance(accepted, bool) or not isinstance(accepted, int) or not 0 <= accepted <= len(batch):
            return 0, LogPublishError(name, f"log publisher {name}: publish returned {accepted!r}, not a "
                                            f"count from 0 to {len(batch)}")
        if not accepted:
            return 0, LogPublishError(name, f"log publisher {name} accepted none of {len(batch)} records")
        return accepted, None

    def _failed(self, buffer: PublisherBuffer, exc: Exception, kept: int) -> None:
        buffer.opened = False  # the streams are announced again before the next batch
        buffer.failures += 1
        delay = buffer.backoff.next()
        buffer.retry_at = time.monotonic() + delay
        if buffer.failures == 1:
            _log.warning("log publisher %s failed: %s; keeping its %d records (at most %d, then the oldest "
                         "are dropped) and retrying", buffer.name, exc, kept, buffer.max_buffered,
                         exc_info=not isinstance(exc, _EXPECTED_FAILURES))
        else:
            _log.debug("log publisher %s: attempt %d failed: %s; %d records kept, next attempt in %.1f s",
                       buffer.name, buffer.failures, exc, kept, delay)

    def _end_overflow(self, buffer: PublisherBuffer) -> None:
        """Closes an overflow episode once the publisher caught up, with its one warning."""
        with self._lock:
            dropped = buffer.end_overflow()
        if dropped:
            _log.warning("log publisher %s: %d records were dropped, the oldest first, because its buffer of "
                         "%d was full", buffer.name, dropped, buffer.max_buffered)

    # --- Shutdown ----------------------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Stops the periodic deliveries, delivers what is buffered, then flushes and closes each publisher.

        Idempotent. Records still undelivered when the time is up are lost: a warning counts them, and
        their producers are told (``on_settled(False)``). The time limit holds as long as each publisher
        honours the timeout it is given.

        Args:
            timeout: seconds the whole close may take.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for task in self._tasks:
            task.cancel()
        if not self._deliver_all(deadline):
            _log.warning("record sink: a delivery still running at shutdown did not finish in time")
        for buffer in self._buffers:
            try:
                buffer.publisher.flush(max(deadline - time.monotonic(), 0.0))
                buffer.publisher.close(max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                _log.warning("closing log publisher %s: %s", buffer.name, exc,
                             exc_info=not isinstance(exc, _EXPECTED_FAILURES))
            self._end_overflow(buffer)
            done: list[Ticket] = []
            with self._lock:
                left = buffer.discard(done)
            notify(done)
            if left:
                _log.warning("log publisher %s: %d records could not be delivered before shutdown and are "
                             "lost", buffer.name, left)
