"""The suite's foundation: its fixtures (the plugin's class, transports, brokers) and its helpers."""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, TypeVar

import pytest

from pca_core.api.errors import TransportError
from pca_core.api.plugin import Capability
from pca_core.api.settings import TransportConfig
from pca_core.api.transport import Message, QoS, Transport
from pca_core.config import convert
from pca_core.runtime import discovery
from pca_core.runtime.plugins import prepare
from pca_core.testing._bounded import bounded, close_failures, lookup_fixture
from pca_core.testing.broker import Broker
from pca_core.testing.gating import requires, skip_undeclared, suite_plugin
from pca_core.testing.waiting import Inbox, wait_until

__all__ = ["FAST_RECONNECT", "PROBE", "ConformanceBase", "TransportFactory", "lookup_fixture", "requires"]

_F = TypeVar("_F", bound=Callable[..., Any])
_R = TypeVar("_R")

PROBE = b"pca-conformance-probe:"
"""How the payloads of :meth:`ConformanceBase.await_subscription`'s probes start."""
FAST_RECONNECT: Mapping[str, float] = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.5}
"""The reconnect delays of the suite's transports unless ``transport_settings`` says otherwise."""


class TransportFactory(Protocol):
    """The type of the ``make_transport`` fixture."""

    def __call__(self, urls: Sequence[str] | None = None, **settings: Any) -> Transport:
        """Builds an unconnected transport of the plugin under test, closed again at teardown.

        Args:
            urls: the broker URLs, in failover order; by default the ``broker`` fixture's URL.
            **settings: other :class:`pca_core.api.TransportConfig` fields (``connect_timeout``,
                ``publish_timeout``, ``qos``, ``username``, ``password``, ``client_id``,
                ``reconnect_delay``, ``tls`` as a dict or a :class:`pca_core.api.TlsConfig`); they win
                over the ``transport_settings`` fixture. ``options`` replaces the plugin's
                ``transport_options`` table.
        """
        ...


class ConformanceBase:
    """The fixtures and helpers every part of the suite uses; see :class:`TransportConformance`."""

    plugin: ClassVar[str]
    wait_timeout: ClassVar[float] = 30.0
    reconnect_timeout: ClassVar[float] = 60.0
    liveness_margin: ClassVar[float] = 10.0
    close_timeout: ClassVar[float] = 5.0

    _capabilities: frozenset[Capability]
    _root: str

    # -- fixtures -------------------------------------------------------------------------------------

    @pytest.fixture
    def transport_class(self) -> type[Transport]:
        """The plugin's class, loaded through its entry point in ``pca.transports``."""
        return suite_plugin(self, discovery.TRANSPORTS, "transport")

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest, transport_class: type[Transport]) -> None:
        # Runs before the other fixtures, so a skipped test starts no broker.
        skip_undeclared(request.function, transport_class.capabilities, f"transport plugin {self.plugin!r}")
        self._capabilities = frozenset(transport_class.capabilities)
        self._root = f"pca-conformance/{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def _tls_broker(self, request: pytest.FixtureRequest) -> Broker:
        # Looked up only after the capability check, so a plugin without TLS needs no tls_broker fixture;
        # requested first by the TLS tests, so it outlives their transports.
        broker = lookup_fixture(request, "tls_broker", None)
        if broker is None:
            pytest.fail(f"{type(self).__name__}: plugin {self.plugin!r} declares capability 'tls', so "
                        f"the class must provide a tls_broker fixture", pytrace=False)
        if not broker.ca_file:
            pytest.fail(f"{type(self).__name__}: the tls_broker fixture's broker has no ca_file",
                        pytrace=False)
        return broker

    @pytest.fixture
    def make_transport(self, request: pytest.FixtureRequest, broker: Broker,
                       transport_class: type[Transport]) -> Iterator[TransportFactory]:
        """Builds unconnected transports of the plugin under test; closes all of them at teardown."""
        table: Mapping[str, Any] = lookup_fixture(request, "transport_options", {})
        defaults = {**FAST_RECONNECT, **lookup_fixture(request, "transport_settings", {})}
        made: list[Transport] = []

        def make(urls: Sequence[str] | None = None, **settings: Any) -> Transport:
            if "plugin" in settings:
                raise TypeError("make_transport() builds the class's own plugin; 'plugin' cannot be set")
            raw = dict(settings.pop("options", table))
            tree = {**defaults, "plugin": self.plugin, "urls": list([broker.url] if urls is None else urls),
                    "options": raw, **settings}
            config = convert(tree, TransportConfig, source="make_transport()")
            options = prepare(transport_class, config, source=f"{type(self).__name__}.transport_options",
                              key="transport")
            transport = transport_class(config, options)
            made.append(transport)
            return transport

        yield make
        failures = close_failures(
            ((f"{type(t).__name__}.close({self.close_timeout})",
              functools.partial(t.close, self.close_timeout)) for t in reversed(made)),
            self.close_timeout + self.liveness_margin)
        if failures:
            pytest.fail("closing the test's transports failed: " + "; ".join(failures), pytrace=False)

    # -- helpers --------------------------------------------------------------------------------------

    def topic(self, *levels: str) -> str:
        """A canonical topic under this test's own root, so tests never see each other's messages."""
        return "/".join((self._root, *levels))

    @property
    def qos(self) -> QoS:
        """The QoS the tests publish at: 1 when the plugin offers it, else 0."""
        return QoS.AT_LEAST_ONCE if Capability.QOS1 in self._capabilities else QoS.AT_MOST_ONCE

    def connected(self, make_transport: TransportFactory, *args: Any, **kwargs: Any) -> Transport:
        """Builds a transport with ``make_transport(*args, **kwargs)`` and connects it."""
        transport = make_transport(*args, **kwargs)
        transport.connect()
        return transport

    def await_subscription(self, publisher: Transport, topic: str, *inboxes: Inbox) -> None:
        """Publishes probes on ``topic`` until every inbox has received one of this call's.

        A broker may register a subscription some time after ``subscribe`` returned; this waits for it
        by a round trip instead of sleeping. Probe payloads start with ``PROBE``; see :meth:`real`. Only
        a probe of this call counts, so that one received before a broker restart proves nothing about
        the subscription after it.
        """
        counter = itertools.count()
        mine = PROBE + uuid.uuid4().hex[:12].encode() + b":"

        def arrived(messages: list[Message]) -> bool:
            return any(m.payload.startswith(mine) for m in messages)

        def probe_arrived() -> bool:
            try:
                publisher.publish(topic, mine + str(next(counter)).encode(), qos=self.qos)
            except TransportError:
                return False
            return all(inbox.wait_for(arrived, 0.25) for inbox in inboxes)

        assert wait_until(probe_arrived, self.wait_timeout, interval=0.05), (
            f"no probe published on {topic!r} reached every subscriber within {self.wait_timeout} s")

    @staticmethod
    def real(inbox: Inbox) -> list[Message]:
        """The messages of ``inbox`` that are not probes of :meth:`await_subscription`."""
        return [m for m in inbox.messages if not m.payload.startswith(PROBE)]

    def publish_eventually(self, publisher: Transport, topic: str, payload: bytes, timeout: float) -> None:
        """Publishes, retrying while the transport raises TransportError (it may still be reconnecting)."""
        errors: list[TransportError] = []

        def published() -> bool:
            try:
                publisher.publish(topic, payload, qos=self.qos)
                return True
            except TransportError as exc:
                errors.append(exc)
                return False

        assert wait_until(published, timeout, interval=0.1), (
            f"publish on {topic!r} still failed after {timeout} s; last error: {errors[-1]!r}")

    def bounded(self, call: Callable[[], object], limit: float, what: str) -> BaseException | None:
        """Fails the test unless ``call`` returns within ``limit`` s; returns what it raised, or None."""
        return bounded(call, limit, what)

    @contextmanager
    def outage(self, broker: Broker) -> Iterator[None]:
        """Stops ``broker`` for the duration of the block and starts it again, whatever happens."""
        broker.stop()
        try:
            yield
        finally:
            broker.start()
