"""The core dispatcher: one bounded queue and one thread between the transports and the handlers.

Transports call the handlers they were given on their client library's network thread; those handlers
only enqueue. The dispatcher thread runs the real handler, so a slow handler never stalls a network loop,
and then acknowledges the message (:meth:`Message.ack`): a transport that settles with its broker after
handling does so only now. A message still queued at shutdown is never acknowledged, so a transport with
redelivery delivers it again to the next run.

The queue is bounded by count and by bytes (the payloads queued and the one being handled). A message over
the maximum size is never queued; when the queue is full the network thread waits a bounded time for room.
Either way a message that is not queued is dropped and acknowledged at once, on the network thread: a
persistent session must not deliver it forever, nor hold back the acknowledgements of those after it.
Each kind of drop is logged once per episode (its first message; then, when a message passes again, how
many there were) and counted in :attr:`Dispatcher.dropped_oversize` and :attr:`Dispatcher.dropped_full`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from pca_core.api.transport import Handler, Message
from pca_core.stratos.excerpt import bounded

_log = logging.getLogger(__name__)

MiB = 1024 * 1024
PUT_TIMEOUT = 5.0
"""Seconds a full queue holds the network thread before the message is dropped: a few, well within any
keepalive; during a drop episode no message waits again until one found room."""


class _Drops:
    """Drops of one kind: a total, and how many since the episode began (0 when none is running)."""

    def __init__(self) -> None:
        self.total = 0
        self.episode = 0

    def add(self) -> bool:
        """Counts one drop; True when it begins an episode."""
        self.total += 1
        self.episode += 1
        return self.episode == 1

    def end(self) -> int:
        """Ends the episode; returns how many it dropped."""
        count, self.episode = self.episode, 0
        return count


class Dispatcher:
    """Runs message handlers one at a time on its own thread.

    Args:
        queue_size: the most messages waiting at once.
        queue_bytes: the most payload bytes waiting or being handled at once; a message bigger than this
            still passes when nothing else is queued.
        max_message_size: a message with a bigger payload is dropped (``transport.max_message_size``).
        put_timeout: seconds a full queue makes the transport's network thread wait before dropping.

    Attributes:
        received: messages handed to it by the transports, dropped ones included.
        dropped_oversize: messages dropped for being over ``max_message_size``.
        dropped_full: messages dropped because the queue stayed full for ``put_timeout``.
    """

    def __init__(self, queue_size: int = 10_000, *, queue_bytes: int = 64 * MiB,
                 max_message_size: int = 16 * MiB, put_timeout: float = PUT_TIMEOUT) -> None:
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.max_message_size = max_message_size
        self.put_timeout = put_timeout
        self._items: deque[tuple[Callable[[Message], None], Message]] = deque()
        self._bytes = 0  # payload bytes queued or being handled
        self._cond = threading.Condition()
        self._accepting = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.received = 0
        self._refused = 0
        self._oversize = _Drops()
        self._full = _Drops()

    @property
    def dropped_oversize(self) -> int:
        """Messages dropped for being over the maximum size, since the start."""
        return self._oversize.total

    @property
    def dropped_full(self) -> int:
        """Messages dropped because the queue stayed full, since the start."""
        return self._full.total

    @property
    def dropped_stopping(self) -> int:
        """Messages not taken because the dispatcher was stopping."""
        return self._refused

    def start(self) -> None:
        """Starts the dispatcher thread."""
        if self._thread is not None:
            raise RuntimeError("dispatcher already started")
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="pca-dispatcher", daemon=True)
        self._thread.start()

    def wrap(self, handler: Callable[[Message], None]) -> Handler:
        """Returns a handler for a transport that queues each message for ``handler``."""

        def enqueue(message: Message) -> None:
            self._enqueue(handler, message)

        return enqueue

    @property
    def depth(self) -> int:
        """Messages waiting to be handled."""
        return len(self._items)

    def stop(self, timeout: float) -> bool:
        """Stops intake, lets the queued messages be handled, and waits up to ``timeout`` seconds.

        Returns:
            True when every queued message was handled and the thread ended in time.
        """
        with self._cond:
            self._accepting = False
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            _log.warning("dispatcher: %d messages not handled before the shutdown deadline", self.depth)
            return False
        if self._refused:
            _log.info("dispatcher: %d messages arrived during shutdown and were not taken", self._refused)
        return True

    def _enqueue(self, handler: Callable[[Message], None], message: Message) -> None:
        self.received += 1  # unlocked, like the drop counts: a transport calls from its network thread
        size = len(message.payload)
        if size > self.max_message_size:
            if self._oversize.add():
                _log.warning("message over the maximum size dropped: %s, %d bytes (max_message_size %d); "
                             "more are counted until a message fits", bounded(message.topic), size,
                             self.max_message_size)
            _ack(message)
            return
        with self._cond:
            # Within an episode of drops no message waits: each would hold the network thread again.
            if self._accepting and not self._has_room(size) and not self._full.episode:
                self._cond.wait_for(lambda: not self._accepting or self._has_room(size), self.put_timeout)
            if not self._accepting:
                self._refused += 1
                _log.debug("shutting down: not accepting %s", bounded(message.topic))
                return
            queued = self._has_room(size)
            if queued:
                self._items.append((handler, message))
                self._bytes += size
                self._cond.notify_all()
                full_drops, oversize_drops = self._full.end(), self._oversize.end()
            else:
                began = self._full.add()
                depth, held = len(self._items), self._bytes
        if not queued:
            if began:
                _log.warning("dispatcher full: dropping %s and what follows until there is room "
                             "(%d messages, %d bytes held)", bounded(message.topic), depth, held)
            _ack(message)
            return
        if full_drops:
            _log.info("dispatcher has room again; %d messages were dropped while it was full", full_drops)
        if oversize_drops:
            _log.info("%d messages over the maximum size were dropped", oversize_drops)

    def _has_room(self, size: int) -> bool:
        return len(self._items) < self.queue_size and (self._bytes == 0
                                                       or self._bytes + size <= self.queue_bytes)

    def _run(self) -> None:
        handled = 0  # the payload bytes of the message handled last, still counted in _bytes
        while True:
            with self._cond:
                self._bytes -= handled
                while not self._items and not self._stopping:
                    self._cond.wait()  # an empty queue has room: nobody waits to put
                if not self._items:
                    return
                handler, message = self._items.popleft()
                self._cond.notify_all()  # room came free: a place in the queue, and the bytes handled
            handled = len(message.payload)
            try:
                handler(message)
            except Exception:
                _log.exception("handler failed on a message from %s", bounded(message.topic))
            _ack(message)  # handled or failed: a message that cannot be handled is not redelivered


def _ack(message: Message) -> None:
    try:
        message.ack()
    except Exception:
        _log.exception("acknowledging a message from %s failed", bounded(message.topic))
