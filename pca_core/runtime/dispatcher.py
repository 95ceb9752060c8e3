"""The core dispatcher: one bounded queue and one thread between the transports and the handlers.

Transports call the handlers they were given on their client library's network thread; those handlers
only enqueue. The dispatcher thread runs the real handler, so a slow handler never stalls a network loop,
and then acknowledges the message (:meth:`Message.ack`): a transport that settles with its broker after
handling does so only now. A message still queued at shutdown is never acknowledged, so a transport with
redelivery delivers it again to the next run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from pca_core.api.transport import Handler, Message

_log = logging.getLogger(__name__)

_STOP = object()
_PUT_WAIT = 1.0  # seconds a full queue blocks the network thread before warning and trying again


class Dispatcher:
    """Runs message handlers one at a time on its own thread.

    Args:
        queue_size: the most messages waiting at once. When the queue is full the transport's network
            thread waits (backpressure on the broker), it never drops a message.
    """

    def __init__(self, queue_size: int = 10_000) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused = 0

    def start(self) -> None:
        """Starts the dispatcher thread."""
        if self._thread is not None:
            raise RuntimeError("dispatcher already started")
        self._accepting.set()
        self._thread = threading.Thread(target=self._run, name="pca-dispatcher", daemon=True)
        self._thread.start()

    def wrap(self, handler: Callable[[Message], None]) -> Handler:
        """Returns a handler for a transport that queues each message for ``handler``."""

        def enqueue(message: Message) -> None:
            while self._accepting.is_set():
                try:
                    self._queue.put((handler, message), timeout=_PUT_WAIT)
                    return
                except queue.Full:
                    _log.warning("dispatcher queue full (%d); waiting to queue %s",
                                 self._queue.maxsize, message.topic)
            self._refused += 1
            _log.debug("shutting down: not accepting %s", message.topic)

        return enqueue

    @property
    def depth(self) -> int:
        """Messages waiting to be handled."""
        return self._queue.qsize()

    def stop(self, timeout: float) -> bool:
        """Stops intake, lets the queued messages be handled, and waits up to ``timeout`` seconds.

        Returns:
            True when every queued message was handled and the thread ended in time.
        """
        self._accepting.clear()
        thread = self._thread
        if thread is None:
            return True
        try:
            self._queue.put(_STOP, timeout=max(timeout, 0.001))
        except queue.Full:
            return False
        thread.join(timeout)
        if thread.is_alive():
            _log.warning("dispatcher: %d messages not handled before the shutdown deadline", self.depth)
            return False
        if self._refused:
            _log.info("dispatcher: %d messages arrived during shutdown and were not taken", self._refused)
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            handler, message = item  # type: ignore[misc]
            try:
                handler(message)
            except Exception:
                _log.exception("handler failed on a message from %s", message.topic)
            try:
                message.ack()  # handled or failed: a message that cannot be handled is not redelivered
            except Exception:
                _log.exception("acknowledging a message from %s failed", message.topic)
