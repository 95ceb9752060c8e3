"""The records that cross between a caller's thread and the container thread: connects and publishes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pca_core.api import PcaError


@dataclass(eq=False)
class ConnectRequest:
    """A ``connect()`` call waiting for the container thread's pass over the URL list.

    Attributes:
        deadline: when the call gives up (``time.monotonic()``), or None.
        tried: each URL tried so far (password masked) and why it failed.
        error: set with ``done`` when the pass failed.
        cancelled: the caller gave up; the pass ends after the attempt in progress.
    """

    deadline: float | None
    tried: list[str] = field(default_factory=list)
    error: PcaError | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def finish(self, error: PcaError | None) -> None:
        """Wakes the caller, with ``error`` when the pass failed."""
        self.error = error
        self.done.set()


@dataclass(eq=False, slots=True)
class Publish:
    """One message to send, and its outcome once the broker settled it.

    Attributes:
        address: the AMQP address it goes to.
        key: its routing key, sent as the subject.
        payload: the body, sent as one data section.
        confirm: wait for the broker's disposition (QoS 1); else it is sent pre-settled.
        error: why it was not accepted, set with ``done``.
    """

    address: str
    key: str
    payload: bytes
    confirm: bool
    error: PcaError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, error: PcaError | None = None) -> None:
        """Records the outcome and wakes the publishing thread; only the first call counts."""
        if not self.done.is_set():
            self.error = error
            self.done.set()
