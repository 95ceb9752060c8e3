"""kafka-python's failures as the transport reports them: one line each, saying what to check.

kafka-python retries a bootstrap connection the broker refused until its timeout, and then raises only a
timeout: the refusal itself (wrong credentials, a SASL mechanism the broker does not offer) is in a
warning of the logger ``kafka.net.manager``. :data:`REFUSALS` keeps the last few of those, so that
``connect`` can say the credentials were refused rather than that no server answered.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from kafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from pca_core.api import AuthenticationError, ConnectionFailed, TransportError

NAME = "kafka"
_SASL_REFUSALS = (SaslAuthenticationFailedError, UnsupportedSaslMechanismError, IllegalSaslStateError)


class RefusalWatch(logging.Handler):
    """Keeps the SASL refusals kafka-python logs, with when they came (the last few only)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._seen: deque[tuple[float, KafkaError]] = deque(maxlen=4)

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, _SASL_REFUSALS):
                self._seen.append((time.monotonic(), arg))

    def since(self, started: float) -> KafkaError | None:
        """The latest refusal seen at or after ``started`` (a ``time.monotonic()``), if any.

        Two transports of one process that bootstrap at the same moment share this record.
        """
        for at, refusal in reversed(self._seen):
            if at >= started:
                return refusal
        return None


REFUSALS = RefusalWatch()


def quiet_kafka_python() -> None:
    """Keeps kafka-python's own log lines out of the agent's log unless the logger ``kafka`` is configured.

    kafka-python logs every connection attempt and failure; the transport reports what matters itself.
    Its bootstrap warnings still reach :data:`REFUSALS`.
    """
    manager = logging.getLogger("kafka.net.manager")
    if REFUSALS not in manager.handlers:
        manager.addHandler(REFUSALS)
    if logging.getLogger("kafka").level == logging.NOTSET:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        manager.setLevel(logging.WARNING)
        manager.propagate = False


def transient(exc: KafkaError) -> bool:
    """Whether a produce error may go away by itself.

    kafka-python's retriable errors, and the broker's unknown error (-1), which Tansu answers for a while
    after a restart.
    """
    return bool(getattr(exc, "retriable", False)) or getattr(exc, "errno", None) == -1


def connect_error(exc: KafkaError, servers: str, username: str | None, started: float) -> TransportError:
    """What a failed bootstrap (from ``started`` on) means: refused credentials, or no server answering."""
    refusal = exc if isinstance(exc, _SASL_REFUSALS) else REFUSALS.since(started)
    if refusal is not None:
        text = " ".join(f"{type(refusal).__name__}: {refusal}".split())
        check = "transport.username and transport.password"
        if isinstance(refusal, UnsupportedSaslMechanismError):
            check = "that the broker offers SASL PLAIN (its sasl.enabled.mechanisms)"
        return AuthenticationError(NAME, f"kafka: {servers} refused the credentials of user {username!r} "
                                         f"({text}); check {check}")
    if isinstance(exc, KafkaTimeoutError):
        return ConnectionFailed(NAME, f"kafka: no bootstrap server answered ({servers}); check "
                                      f"transport.urls and that the brokers are up")
    return ConnectionFailed(NAME, f"kafka: could not connect to {servers}: {' '.join(str(exc).split())}")
