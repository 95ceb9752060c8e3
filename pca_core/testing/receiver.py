"""The receiver-control hooks the log publisher conformance suite needs, which a plugin's tests provide."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from pca_core.api.log_publisher import LogRecord

__all__ = ["LogReceiver"]


class LogReceiver(abc.ABC):
    """A receiver of records the tests own: what a publisher delivered, and outages on demand.

    A plugin's tests implement one for their protocol (a Fluentd forward receiver, a databridge, a
    file...), listening on a free port or writing to a temporary directory, so that stopping it disturbs
    nothing else. It decodes what it received back into :class:`~pca_core.api.LogRecord` values. The
    fixture that provides it starts it and stops it for good; the conformance suite stops and starts it
    in between, and leaves it running after every test, whatever the test did to it.

    Attributes:
        options: the publisher's ``options`` table that points it at this receiver (its address, its
            credentials, a CA file...), as a ``[[publishers]]`` section would give it.
    """

    options: Mapping[str, Any]

    @abc.abstractmethod
    def records(self) -> list[LogRecord]:
        """Every record received so far, in the order of arrival.

        Each with its stream's name, its timestamp and its fields; for a protocol with acknowledgements,
        those the receiver acknowledged.
        """

    @abc.abstractmethod
    def start(self) -> None:
        """Starts receiving again, on the same address, and returns once it accepts records.

        The suite calls it only after :meth:`stop`; doing nothing when the receiver is running makes it
        safe to call from a fixture too. Records received before the outage are kept.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stops receiving and returns once no record can reach it any more; idempotent."""

    def restart(self) -> None:
        """Stops the receiver and starts it again on the same address; its connections are lost."""
        self.stop()
        self.start()
