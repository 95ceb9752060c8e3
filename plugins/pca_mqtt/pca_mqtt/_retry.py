"""When the network thread tries again: its reconnect schedule, and what it logs about it."""

from __future__ import annotations

import logging

from pca_core.api import TransportConfig

_log = logging.getLogger("pca_mqtt")


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
        self._refusal_logged = False

    def after_loss(self, url: str, reason: str) -> float:
        """The delay after the connection to ``url`` was lost (the schedule restarts if it was stable).

        Logged at DEBUG only: the transport reports the loss, and the runtime logs that for the operator.
        """
        delay = self._backoff.lost()
        _log.debug("mqtt: lost the connection to %s (%s); reconnecting in %.1f s", url, reason, delay)
        return delay

    def after_failed_pass(self, summary: str, *, refused: bool) -> float:
        """The delay after a pass over the URL list in which no broker accepted; ``summary`` says why."""
        if not refused:
            delay = self._backoff.next()
            _log.warning("mqtt: could not connect to any broker (%s); retrying in %.1f s", summary, delay)
            return delay
        delay = self._backoff.slowest()
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
        """Notes a connection: its loss is timed, and a refusal of the credentials will be logged again."""
        self._backoff.connected()
        if self._refusal_logged:
            _log.info("mqtt: %s accepted the credentials again", url)
        self._refusal_logged = False
