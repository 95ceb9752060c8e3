"""What a Forward receiver got, read back as the core's records: the tag ``pca.<stream>`` undone.

For the log publisher conformance suite and the fluentd publisher's tests, which compare what arrived with
what the core emitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pca_core.api import LogRecord
from pca_core.testing import LogReceiver
from tests.support.forward import ForwardEvent, ForwardReceiver

TAG_PREFIX = "pca."
SHARED_KEY = "the-shared-key-5f3e"
"""The shared key of the tests' receivers that require the handshake."""
USERS = {"pca": "the-password-77c1"}
"""The users (name: password) of the tests' receivers that require a login."""


def core_record(event: ForwardEvent) -> LogRecord | None:
    """The core record ``event`` was made from (stream from its tag, fields from its record, timestamp
    from its time); None for an event of another tag."""
    if not event.tag.startswith(TAG_PREFIX):
        return None
    return LogRecord(event.tag.removeprefix(TAG_PREFIX), event.time, dict(event.record))


class FluentdLogReceiver(LogReceiver):
    """A :class:`ForwardReceiver` as the log publisher conformance suite sees it.

    Args:
        receiver: the Forward receiver.
        **options: more of the publisher's options (``tls``, ``ca_file``, ``shared_key`` ...), next to
            ``servers``, which points at the receiver.
    """

    def __init__(self, receiver: ForwardReceiver, **options: Any) -> None:
        self.forward = receiver
        self.options: Mapping[str, Any] = {"servers": [receiver.url], **options}

    def records(self) -> list[LogRecord]:
        return [r for r in map(core_record, self.forward.events) if r is not None]

    def start(self) -> None:
        self.forward.start()

    def stop(self) -> None:
        self.forward.stop()

    def restart(self) -> None:
        self.forward.restart()
