"""Waiting on a condition with a timeout, which is what tests do instead of sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from pca_core.api.transport import ConnectionState, Message

__all__ = ["Inbox", "StateChange", "StateLog", "wait_until"]

_T = TypeVar("_T")

StateChange = tuple[ConnectionState, BaseException | None]
"""What a connection-state listener is told: the new state and the error that caused it, if any."""


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Polls ``condition`` until it is true or ``timeout`` seconds have passed.

    Args:
        condition: called repeatedly, first at once; a truthy result ends the wait.
        timeout: the longest wait, in seconds.
        interval: the pause between two calls, in seconds.

    Returns:
        True as soon as ``condition()`` is true; False if it is still false after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))


class _Log(Generic[_T]):
    """A thread-safe list that a test can wait on."""

    def __init__(self) -> None:
        self._items: list[_T] = []
        self._changed = threading.Condition()

    def _add(self, item: _T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def snapshot(self) -> list[_T]:
        """A copy of everything recorded so far, oldest first."""
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[list[_T]], object], timeout: float) -> bool:
        """Waits until ``predicate(items)`` is true; ``items`` is what was recorded so far, oldest first.

        Returns:
            True as soon as the predicate holds; False if it still does not after ``timeout`` seconds.
        """
        with self._changed:
            return bool(self._changed.wait_for(lambda: predicate(self._items), timeout))


class Inbox(_Log[Message]):
    """A subscription handler that keeps every message it receives, for a test to wait on.

    It only appends under a short lock, so it may be called from any thread, a network thread included.

    Args:
        ack: acknowledge each message, as the core's dispatcher does after handling, before it is
            recorded, so a test that saw it may close the transport at once; False leaves that to the test
            (:meth:`Message.ack`).
    """

    def __init__(self, *, ack: bool = True) -> None:
        super().__init__()
        self._ack = ack

    def __call__(self, message: Message) -> None:
        """Acknowledges ``message`` (unless the inbox was made with ``ack=False``), then records it."""
        try:
            if self._ack:
                message.ack()
        finally:
            self._add(message)

    @property
    def messages(self) -> list[Message]:
        """The messages received so far, in arrival order."""
        return self.snapshot()

    @property
    def payloads(self) -> list[bytes]:
        """The payloads received so far, in arrival order."""
        return [message.payload for message in self.snapshot()]

    def wait_for_payload(self, payload: bytes, timeout: float) -> Message | None:
        """Waits for a message with exactly this payload.

        Returns:
            The first such message, or None if none arrived within ``timeout`` seconds.
        """
        if not self.wait_for(lambda items: any(m.payload == payload for m in items), timeout):
            return None
        return next(m for m in self.snapshot() if m.payload == payload)


class StateLog(_Log[StateChange]):
    """A connection-state listener that keeps every change it is told, for a test to wait on."""

    def __call__(self, state: ConnectionState, error: BaseException | None) -> None:
        """Records the change."""
        self._add((state, error))

    @property
    def states(self) -> list[ConnectionState]:
        """The states reported so far, oldest first."""
        return [state for state, _ in self.snapshot()]

    def wait_for_sequence(self, *expected: ConnectionState | tuple[ConnectionState, ...],
                          timeout: float) -> bool:
        """Waits until the reported states contain ``expected`` in this order (other states may come between).

        Args:
            expected: the states to see, in order; a tuple stands for any one of its states.
            timeout: the longest wait, in seconds.

        Returns:
            True once the sequence was seen; False if it was not within ``timeout``.
        """
        alternatives = [step if isinstance(step, tuple) else (step,) for step in expected]

        def seen(items: list[StateChange]) -> bool:
            steps = iter(alternatives)
            step = next(steps, None)
            for state, _ in items:
                if step is not None and state in step:
                    step = next(steps, None)
            return step is None

        return self.wait_for(seen, timeout)
