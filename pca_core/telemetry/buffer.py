"""One log publisher's records on their way to it, and the producers' tickets that learn their fate.

The record sink (:mod:`pca_core.telemetry.records`) keeps a :class:`PublisherBuffer` per publisher and a
:class:`Ticket` per ``emit`` call that asked to be told when its records were settled. Both are touched
only under the sink's lock; callbacks are collected into a list and called once it is released.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable

from pca_core.api.backoff import Backoff
from pca_core.api.log_publisher import LogPublisher, LogRecord

__all__ = ["MAX_BACKOFF", "Entry", "OnSettled", "PublisherBuffer", "Ticket", "notify"]

_log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
"""Seconds between retries of a failing publisher at most (unless its flush interval is longer)."""

OnSettled = Callable[[bool], object]
"""Told, once, that each record of one ``emit`` call was accepted by every publisher of its stream or
dropped (by an overflow, or undelivered at shutdown): True when none was dropped, else False."""


class Ticket:
    """The records of one ``emit`` call that a producer wants to hear about, until all are settled.

    It starts with one count held by ``emit`` itself, so that a record dropped while ``emit`` is still
    adding the others cannot settle the ticket early; ``emit`` releases that count when it is done.
    """

    __slots__ = ("callback", "lost", "remaining")

    def __init__(self, callback: OnSettled) -> None:
        self.callback = callback
        self.remaining = 1
        self.lost = False

    def add(self) -> None:
        """Counts one more (record, publisher) pair to wait for."""
        self.remaining += 1

    def settle(self, *, lost: bool, done: list[Ticket]) -> None:
        """Counts one pair as accepted (or dropped, with ``lost``); appends the ticket to ``done`` at zero."""
        self.remaining -= 1
        self.lost = self.lost or lost
        if self.remaining == 0:
            done.append(self)


Entry = tuple[int, LogRecord, Ticket | None]
"""A buffered record: its number in the buffer, the record, and the ticket of its ``emit`` call."""


def notify(done: Iterable[Ticket]) -> None:
    """Calls the callback of each settled ticket; one that raises is logged and does not stop the others."""
    for ticket in done:
        try:
            ticket.callback(not ticket.lost)
        except Exception:  # a producer's bug must not break delivery
            _log.exception("record sink: a delivery callback raised")


class PublisherBuffer:
    """One publisher's records, numbered as they are buffered, with what the sink knows of its health.

    Numbers let a delivered batch be removed exactly even when an overflow pushed some of its records out
    while it was being published: those left from the front, so a batch's first ``popped_inflight``
    records are the ones that went.

    Args:
        name: the publisher as messages name it: plugin and position, ``file[0]``.
        publisher: the publisher; its ``config`` gives the streams it receives and its batching.
    """

    def __init__(self, name: str, publisher: LogPublisher) -> None:
        config = publisher.config
        self.name = name
        self.publisher = publisher
        self.streams = frozenset(config.streams)
        self.batch_size: int = config.batch_size
        self.flush_interval: float = config.flush_interval
        self.max_buffered: int = config.max_buffered
        self.publish_timeout: float = config.publish_timeout
        # Guarded by the sink's lock.
        self.entries: deque[Entry] = deque()
        self.next_seq = 0
        self.inflight_last = -1  # number of the last record of the batch being published; -1: none
        self.popped_inflight = 0  # records of that batch pushed out meanwhile: lost unless it is accepted
        self.overflowing = False  # an overflow episode is going on
        self.episode_dropped = 0
        self.dropped_total = 0
        self.published_total = 0  # records the publisher accepted
        self.kicked = False  # a delivery of a full batch is queued on the scheduler
        # Held by the one delivery to this publisher that may run; what follows is touched only under it.
        self.delivering = threading.Lock()
        self.opened = False  # open() returned since the last failure: the publisher has its streams
        self.failures = 0  # consecutive failed attempts
        self.retry_at = 0.0  # monotonic time before which the periodic delivery leaves it alone
        self.backoff = Backoff(self.flush_interval, max(self.flush_interval, MAX_BACKOFF))

    def append(self, record: LogRecord, ticket: Ticket | None, done: list[Ticket]) -> None:
        """Buffers ``record``; when full, drops the oldest record first (settling it as lost)."""
        if len(self.entries) >= self.max_buffered:
            seq, _, old_ticket = self.entries.popleft()
            self.overflowing = True
            if seq <= self.inflight_last:
                self.popped_inflight += 1  # its fate is known once the batch returns
            else:
                self.count_dropped(1)
                if old_ticket is not None:
                    old_ticket.settle(lost=True, done=done)
        self.entries.append((self.next_seq, record, ticket))
        self.next_seq += 1

    def count_dropped(self, count: int) -> None:
        """Counts records lost to overflow, in this episode and in all."""
        self.episode_dropped += count
        self.dropped_total += count

    def take(self, last_wanted: int) -> list[Entry]:
        """The oldest records, up to ``batch_size`` and up to number ``last_wanted``, marked in flight."""
        batch: list[Entry] = []
        for entry in self.entries:
            if entry[0] > last_wanted or len(batch) == self.batch_size:
                break
            batch.append(entry)
        if batch:
            self.inflight_last = batch[-1][0]
            self.popped_inflight = 0
        return batch

    def settle_batch(self, batch: list[Entry], accepted: int, done: list[Ticket]) -> int:
        """Records the outcome of publishing ``batch``: its first ``accepted`` records were accepted.

        Those leave the buffer; the others stay for the next attempt, except those an overflow pushed out
        meanwhile, which are now lost.

        Returns:
            The number of records lost.
        """
        popped = self.popped_inflight
        self.inflight_last = -1
        self.popped_inflight = 0
        self.published_total += accepted
        for _, _, ticket in batch[:accepted]:
            if ticket is not None:
                ticket.settle(lost=False, done=done)
        if accepted > popped:
            last = batch[accepted - 1][0]
            while self.entries and self.entries[0][0] <= last:
                self.entries.popleft()
        lost = batch[accepted:popped]
        for _, _, ticket in lost:
            if ticket is not None:
                ticket.settle(lost=True, done=done)
        self.count_dropped(len(lost))
        return len(lost)

    def discard(self, done: list[Ticket]) -> int:
        """Empties the buffer, settling each record as lost; returns how many there were.

        Records of a batch still being published stay: that delivery settles them when it returns.
        """
        left = 0
        while self.entries and self.entries[-1][0] > self.inflight_last:
            _, _, ticket = self.entries.pop()
            left += 1
            if ticket is not None:
                ticket.settle(lost=True, done=done)
        return left

    def end_overflow(self) -> int:
        """Ends an overflow episode; returns the records it dropped (0 when there was no episode)."""
        if not self.overflowing:
            return 0
        dropped = self.episode_dropped
        self.overflowing = False
        self.episode_dropped = 0
        return dropped
