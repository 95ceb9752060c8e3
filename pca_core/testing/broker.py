"""The broker-control hooks the transport conformance suite needs, which a plugin's tests provide."""

from __future__ import annotations

import abc

__all__ = ["Broker"]


class Broker(abc.ABC):
    """A broker the tests own: they can stop it, start it again and restart it.

    A plugin's tests implement one for their broker (a Mosquitto, a Redis server, an in-process bus...)
    started on a free port, so that stopping it disturbs nothing else. The fixture that provides it
    starts it and stops it for good; the conformance suite stops and starts it in between, and leaves it
    running after every test, whatever the test did to it.

    Attributes:
        url: the URL that reaches the broker, as it would appear in ``transport.urls``.
        dead_url: a URL of the same scheme where no broker answers (a free port nobody listens on).
        ca_file: for a broker with TLS, the file of the CA certificate that signed its certificate (a test
            CA, not one of the system's); else None.
    """

    url: str
    dead_url: str
    ca_file: str | None = None

    @abc.abstractmethod
    def start(self) -> None:
        """Starts the broker, on the same address, and returns once it accepts connections.

        The suite calls it only after :meth:`stop`; doing nothing when the broker is already running makes
        it safe to call from a fixture too.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stops the broker and returns once it no longer accepts connections; idempotent."""

    def restart(self) -> None:
        """Stops the broker and starts it again on the same address; its sessions are lost."""
        self.stop()
        self.start()
