"""Calls handed from any thread to the container thread, which alone may touch proton's objects."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable

from proton.reactor import ApplicationEvent, EventInjector

_log = logging.getLogger("pca_amqp")

WAKE = "pca_amqp_wake"
"""The type of the injected event; the handler's ``on_pca_amqp_wake`` runs :meth:`Calls.run`."""


class Calls:
    """A queue of calls for the container thread, with one wake-up per batch.

    :meth:`post` appends and, unless a wake-up is already on its way, triggers one through proton's
    ``EventInjector`` (a pipe write). The container thread clears the flag before it runs the queue, so a
    call posted while it runs is either run in this pass or has triggered the next one. Posting never
    blocks, and takes a lock only to trigger a wake-up: an acknowledgement from the core's dispatcher
    costs a ``deque.append``.
    """

    def __init__(self) -> None:
        self.injector = EventInjector()
        self._queue: deque[Callable[[], None]] = deque()
        self._wake_pending = False
        self._closed = False
        self._pipe_lock = threading.Lock()  # a trigger never writes to a pipe release() closed
        self._released = False

    def post(self, call: Callable[[], None]) -> None:
        """Runs ``call()`` on the container thread, after every call posted before it."""
        self._queue.append(call)
        if not self._wake_pending and not self._closed:
            self._wake_pending = True
            with self._pipe_lock:
                if not self._released:
                    self.injector.trigger(ApplicationEvent(WAKE))

    def run(self) -> None:
        """Runs the posted calls, in order; on the container thread."""
        self._wake_pending = False
        queue = self._queue
        while queue:
            call = queue.popleft()
            try:
                call()
            except Exception:
                _log.exception("amqp: a call on the network thread failed")

    def close(self) -> None:
        """Lets the container end: the injector stops holding it open. On the container thread."""
        self._closed = True
        self.injector.close()

    def release(self) -> None:
        """Closes the injector's pipe once the container thread has ended (proton leaves it open)."""
        with self._pipe_lock:
            if self._released:
                return
            self._released = True
            for fd in self.injector.pipe:
                os.close(fd)
