"""Retry delays: exponential growth up to a cap, with full jitter.

A fleet of agents that lose their broker at the same moment must not come back in step: each delay is
drawn uniformly between 0 and the current ceiling ("full jitter"), and the ceiling doubles after each
attempt up to a maximum. A connection counts as a success, and starts the schedule again, only once it
lasted :data:`STABLE_AFTER` seconds: a broker that accepts and drops a client at once (its client id
taken over by another, say) is not hammered at the first delay for ever.
"""

from __future__ import annotations

import random
import time

STABLE_AFTER = 30.0
"""Seconds a connection must last before its loss starts the schedule again from the first delay."""


class Backoff:
    """The delays before successive retries of one operation.

    The n-th delay (from 0) is drawn uniformly from ``[0, min(maximum, initial * multiplier ** n)]``.
    Call :meth:`reset` once the operation succeeded, so that the next failure starts small again.

    Args:
        initial: the ceiling of the first delay, in seconds.
        maximum: the highest ceiling, in seconds.
        multiplier: how much the ceiling grows per attempt.
        rng: the random source; a private one by default.

    Raises:
        ValueError: ``initial`` is not positive, ``maximum`` is below ``initial``, or ``multiplier`` is
            below 1.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 60.0, *, multiplier: float = 2.0,
                 rng: random.Random | None = None) -> None:
        if not (initial > 0 and maximum >= initial and multiplier >= 1):
            raise ValueError(f"backoff: expected 0 < initial <= maximum and multiplier >= 1, got initial "
                             f"{initial}, maximum {maximum}, multiplier {multiplier}")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self._rng = rng or random.Random()
        self._attempts = 0
        self._connected_at: float | None = None

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset`."""
        return self._attempts

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # Capped before the power can overflow: the ceiling reaches the maximum long before that.
        exponent = min(self._attempts, 64)
        return min(self.maximum, self.initial * self.multiplier ** exponent)

    def next(self) -> float:
        """The delay before the next attempt, in seconds; each call counts one attempt."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self._attempts += 1
        return delay

    def reset(self) -> None:
        """Starts again from the first delay."""
        self._attempts = 0

    def connected(self) -> None:
        """Notes that a connection was made now; :meth:`lost` tells how long it lasted."""
        self._connected_at = time.monotonic()

    def lost(self) -> float:
        """The delay after the connection noted by :meth:`connected` was lost.

        The schedule starts again from the first delay when the connection lasted :data:`STABLE_AFTER`
        seconds; a shorter one counts as one more failed attempt.
        """
        if self._connected_at is not None and time.monotonic() - self._connected_at >= STABLE_AFTER:
            self.reset()
        self._connected_at = None
        return self.next()

    def slowest(self) -> float:
        """A delay at the slowest pace, between half the maximum and the maximum.

        For a retry that cannot succeed soon, such as one after refused credentials.
        """
        return self._rng.uniform(self.maximum / 2, self.maximum)
