"""When the network thread tries again: its reconnect schedule, and what it logs about it."""

from __future__ import annotations

import logging
import random

from pca_core.api import TransportConfig

_log = logging.getLogger("pca_mqtt")

STABLE_AFTER = 30.0
"""Seconds a connection must last before its loss restarts the reconnect schedule from the beginning.

A broker that accepts and then drops the agent at once (a client id taken over by another agent, say)
would otherwise be hammered at the first delay for ever.
"""


class RetrySchedule:
    """The delays between the network thread's passes over the URL list.

    After a lost connection or a failed pass the delay is the next of ``transport.backoff()``: drawn from
    0 to a ceiling that starts at ``reconnect_delay`` and doubles up to ``max_reconnect_delay``. After a
    pass in which a broker refused the credentials, which no retry soon will fix, the delay is the
    slowest pace of that schedule, drawn between half of ``max_reconnect_delay`` and all of it; the
    refusal is logged once, as an error, until a broker accepts again.

    Args:
        config: the transport's settings.
    """

    def __init__(self, config: TransportConfig) -> None:
        self._backoff = config.backoff()
        self._slowest = config.max_reconnect_delay
        self._random = random.Random()
        self._refusal_logged = False

    def after_loss(self, url: str, reason: str, lasted: float) -> float:
        """The delay after a connection of ``lasted`` seconds to ``url`` was lost."""
        if lasted >= STABLE_AFTER:
            self._backoff.reset()
        delay = self._backoff.next()
        _log.warning("mqtt: lost the connection to %s (%s); reconnecting in %.1f s", url, reason, delay)
        return delay

    def after_failed_pass(self, summary: str, *, refused: bool) -> float:
        """The delay after a pass over the URL list in which no broker accepted; ``summary`` says why."""
        if not refused:
            delay = self._backoff.next()
            _log.warning("mqtt: could not connect to any broker (%s); retrying in %.1f s", summary, delay)
            return delay
        delay = self._random.uniform(self._slowest / 2, self._slowest)
        if self._refusal_logged:
            _log.debug("mqtt: credentials still refused; retrying in %.1f s", delay)
        else:
            self._refusal_logged = True
            _log.error("mqtt: the broker refused the credentials (%s); retrying every %.0f to %.0f s until "
                       "they are accepted", summary, self._slowest / 2, self._slowest)
        return delay

    def after_error(self) -> float:
        """The delay after an unexpected error of the network thread."""
        return self._backoff.next()

    def connected(self, url: str) -> None:
        """Notes a connection: a refusal of the credentials will be logged again."""
        if self._refusal_logged:
            _log.info("mqtt: %s accepted the credentials again", url)
        self._refusal_logged = False
