"""The transport conformance suite: what every Transport plugin must do against a broker it can control."""

from __future__ import annotations

import functools
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, TypeVar

import pytest

from pca_core.api.errors import ConnectionFailed, TransportError
from pca_core.api.plugin import Capability
from pca_core.api.transport import ConnectionState, Message, QoS, Transport
from pca_core.config import TransportConfig, convert
from pca_core.runtime import discovery
from pca_core.runtime.plugins import prepare
from pca_core.testing.broker import Broker
from pca_core.testing.waiting import Inbox, StateLog, wait_until

__all__ = ["TransportConformance", "TransportFactory", "requires"]

_F = TypeVar("_F", bound=Callable[..., Any])
_R = TypeVar("_R")

_PROBE = b"pca-conformance-probe:"
_REQUIRES = "_pca_requires"


class TransportFactory(Protocol):
    """The type of the ``make_transport`` fixture."""

    def __call__(self, urls: Sequence[str] | None = None, **settings: Any) -> Transport:
        """Builds an unconnected transport of the plugin under test, closed again at teardown.

        Args:
            urls: the broker URLs, in failover order; by default the ``broker`` fixture's URL.
            **settings: other :class:`pca_core.config.TransportConfig` fields (``connect_timeout``,
                ``publish_timeout``, ``qos``, ``username``, ``password``, ``client_id``, ``tls`` as a
                dict or a :class:`pca_core.config.TlsConfig`); ``options`` replaces the plugin's
                ``transport_options`` table.
        """
        ...


def requires(*capabilities: Capability) -> Callable[[_F], _F]:
    """Marks a test of a conformance class as needing ``capabilities``.

    The test is skipped, before any fixture starts a broker, for a plugin whose class does not declare
    every one of them in :attr:`pca_core.api.Plugin.capabilities`.

    Raises:
        ValueError: a capability is not a :class:`~pca_core.api.Capability` (a typo fails, never skips).
    """
    needed = tuple(Capability(c) for c in capabilities)

    def mark(test: _F) -> _F:
        setattr(test, _REQUIRES, (*getattr(test, _REQUIRES, ()), *needed))
        return test

    return mark


class TransportConformance:
    """The behaviour every transport plugin must show; subclass it in the plugin's tests.

    The subclass names the plugin and provides the brokers; the suite builds every transport through
    discovery, exactly as the agent does, so the entry point is tested too::

        from pca_core.testing import Broker, TransportConformance

        class TestMqttConformance(TransportConformance):
            plugin = "mqtt"                        # the name in the pca.transports entry point group

            @pytest.fixture
            def broker(self) -> Iterator[Broker]:  # required: a broker this test owns, on a free port
                ...

            @pytest.fixture
            def tls_broker(self) -> Iterator[Broker]:  # required with capability "tls"; has ca_file
                ...

            @pytest.fixture
            def transport_options(self) -> dict:   # optional: the plugin's own options table
                return {"keepalive": 10}

    ``broker`` may also come from a conftest, at any scope: tests use their own topics and leave the
    broker running. Tests of a capability the plugin's class does not declare (``qos1``, ``wildcards``,
    ``tls``) are skipped with a reason naming it.

    Attributes:
        plugin: the entry point name of the transport under test; the subclass must set it.
        wait_timeout: how long to wait for something that should happen (a message, a state change).
        reconnect_timeout: how long to wait for the transport to reconnect after a broker restart.
        liveness_margin: added to a timeout the transport was given, to bound how late it may return.
        close_timeout: the timeout given to ``close`` for every transport at teardown.
    """

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
        name = getattr(self, "plugin", None)
        if not name:
            pytest.fail(f"{type(self).__name__}: set the class attribute plugin to the transport's entry "
                        f"point name in {discovery.TRANSPORTS!r}", pytrace=False)
        cls = discovery.load_plugin(discovery.TRANSPORTS, name)
        assert issubclass(cls, Transport)  # load_plugin checked it; this tells the type checker
        return cls

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest, transport_class: type[Transport]) -> None:
        # Runs before the other fixtures, so a skipped test starts no broker.
        needed = getattr(request.function, _REQUIRES, ())
        missing = [c for c in needed if c not in transport_class.capabilities]
        if missing:
            pytest.skip(f"transport plugin {self.plugin!r} does not declare capability "
                        + ", ".join(repr(str(c)) for c in missing))
        self._capabilities = frozenset(transport_class.capabilities)
        self._root = f"pca-conformance/{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def _tls_broker(self, request: pytest.FixtureRequest) -> Broker:
        # Looked up only after the capability check, so a plugin without TLS needs no tls_broker fixture;
        # requested first by the TLS tests, so it outlives their transports.
        broker = _lookup(request, "tls_broker", None)
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
        table: Mapping[str, Any] = _lookup(request, "transport_options", {})
        made: list[Transport] = []

        def make(urls: Sequence[str] | None = None, **settings: Any) -> Transport:
            if "plugin" in settings:
                raise TypeError("make_transport() builds the class's own plugin; 'plugin' cannot be set")
            raw = dict(settings.pop("options", table))
            tree = {"plugin": self.plugin, "urls": list([broker.url] if urls is None else urls),
                    "options": raw, **settings}
            config = convert(tree, TransportConfig, source="make_transport()")
            options = prepare(transport_class, config, source=f"{type(self).__name__}.transport_options",
                              key="transport")
            transport = transport_class(config, options)
            made.append(transport)
            return transport

        yield make
        failures = []
        for transport in reversed(made):
            error = _run_bounded(functools.partial(transport.close, self.close_timeout),
                                 self.close_timeout + self.liveness_margin)
            if isinstance(error, _StillRunning):
                failures.append(f"{type(transport).__name__}.close({self.close_timeout}) did not return "
                                f"within {self.close_timeout + self.liveness_margin} s")
            elif error is not None:
                failures.append(f"{type(transport).__name__}.close({self.close_timeout}) raised {error!r}")
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
        """Publishes probes on ``topic`` until every inbox has received one.

        A broker may register a subscription some time after ``subscribe`` returned; this waits for it
        by a round trip instead of sleeping. Probe payloads start with ``_PROBE``; see :meth:`real`.
        """
        counter = itertools.count()

        def probe_arrived() -> bool:
            try:
                publisher.publish(topic, _PROBE + str(next(counter)).encode(), qos=self.qos)
            except TransportError:
                return False
            return all(inbox.wait_for(_has_probe, 0.25) for inbox in inboxes)

        assert wait_until(probe_arrived, self.wait_timeout, interval=0.05), (
            f"no probe published on {topic!r} reached every subscriber within {self.wait_timeout} s")

    @staticmethod
    def real(inbox: Inbox) -> list[Message]:
        """The messages of ``inbox`` that are not probes of :meth:`await_subscription`."""
        return [m for m in inbox.messages if not m.payload.startswith(_PROBE)]

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
        error = _run_bounded(call, limit)
        if isinstance(error, _StillRunning):
            pytest.fail(f"{what} did not return within {limit} s", pytrace=False)
        return error

    @contextmanager
    def outage(self, broker: Broker) -> Iterator[None]:
        """Stops ``broker`` for the duration of the block and starts it again, whatever happens."""
        broker.stop()
        try:
            yield
        finally:
            broker.start()

    # -- publish, subscribe, close --------------------------------------------------------------------

    def test_round_trip_keeps_the_topic_and_the_payload_bytes_exactly(
            self, make_transport: TransportFactory) -> None:
        """Binary, UTF-8 and 64 KiB payloads arrive as the same bytes, on the same canonical topic."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("instance", "status", "Instance_Started-Event")
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        payloads = [bytes(range(256)), '{"memberId": "ünïcode"}'.encode(), uuid.uuid4().bytes * 4096]
        for payload in payloads:
            publisher.publish(topic, payload, qos=self.qos)
        for payload in payloads:
            message = inbox.wait_for_payload(payload, self.wait_timeout)
            assert message is not None, f"a {len(payload)}-byte payload did not arrive"
            assert isinstance(message, Message)
            assert type(message.payload) is bytes
            assert message.topic == topic

    def test_an_empty_payload_round_trips(self, make_transport: TransportFactory) -> None:
        """An empty payload is a payload: it arrives as ``b""``."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("empty")
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        publisher.publish(topic, b"", qos=self.qos)
        message = inbox.wait_for_payload(b"", self.wait_timeout)
        assert message is not None, "the empty payload did not arrive"
        assert type(message.payload) is bytes and message.topic == topic

    def test_a_payload_that_is_not_bytes_raises_type_error(self, make_transport: TransportFactory) -> None:
        """A ``str`` or ``None`` payload raises TypeError."""
        transport = self.connected(make_transport)
        for payload in ("text", None):
            with pytest.raises(TypeError):
                transport.publish(self.topic("typed"), payload, qos=self.qos)  # type: ignore[arg-type]

    def test_publish_before_connect_raises_transport_error(self, make_transport: TransportFactory) -> None:
        """Publishing on a transport never connected raises TransportError."""
        transport = make_transport()
        with pytest.raises(TransportError):
            transport.publish(self.topic("early"), b"x", qos=self.qos)

    def test_publish_after_close_raises_transport_error(self, make_transport: TransportFactory) -> None:
        """Publishing on a closed transport raises TransportError."""
        transport = self.connected(make_transport)
        transport.close(self.close_timeout)
        with pytest.raises(TransportError):
            transport.publish(self.topic("late"), b"x", qos=self.qos)

    def test_close_is_idempotent_and_works_before_connect(self, make_transport: TransportFactory) -> None:
        """Closing twice, or closing a transport never connected, does not raise."""
        never_connected = make_transport()
        never_connected.close(self.close_timeout)
        never_connected.close(self.close_timeout)
        transport = self.connected(make_transport)
        transport.close(self.close_timeout)
        transport.close(self.close_timeout)

    def test_the_state_listener_sees_connected_then_closed(self, make_transport: TransportFactory) -> None:
        """A state listener is told CONNECTED, then CLOSED once, however often close is called."""
        transport = make_transport()
        log = StateLog()
        transport.add_state_listener(log)
        transport.connect()
        assert log.wait_for_sequence(ConnectionState.CONNECTED, timeout=self.wait_timeout), log.states
        assert wait_until(lambda: transport.state is ConnectionState.CONNECTED, self.wait_timeout)
        transport.close(self.close_timeout)
        assert log.wait_for_sequence(ConnectionState.CONNECTED, ConnectionState.CLOSED,
                                     timeout=self.wait_timeout), log.states
        transport.close(self.close_timeout)
        assert log.states[0] is ConnectionState.CONNECTED
        assert log.states.count(ConnectionState.CLOSED) == 1, log.states
        assert log.states[-1] is ConnectionState.CLOSED
        assert transport.state is ConnectionState.CLOSED

    # -- wildcards and fan-out ------------------------------------------------------------------------

    def _only_matching_arrive(self, make_transport: TransportFactory, pattern: str, probe_topic: str,
                              matching: Sequence[str], other: Sequence[str]) -> None:
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        inbox = Inbox()
        subscriber.subscribe(pattern, inbox)
        self.await_subscription(publisher, probe_topic, inbox)
        # The topics that must not arrive go first, so by the time the last matching one (the marker) is
        # in, a wrong delivery would most likely have arrived too.
        for topic in (*other, *matching):
            publisher.publish(topic, topic.encode(), qos=self.qos)
        assert inbox.wait_for(lambda ms: {t.encode() for t in matching} <= {m.payload for m in ms},
                              self.wait_timeout), (
            f"{pattern!r}: expected {sorted(matching)}, got {sorted({m.topic for m in self.real(inbox)})}")
        received = self.real(inbox)
        assert {m.topic for m in received} == set(matching), f"{pattern!r} delivered a topic it must not"
        assert all(m.payload == m.topic.encode() for m in received)

    @requires(Capability.WILDCARDS)
    def test_hash_matches_every_level_below_and_nothing_else(self, make_transport: TransportFactory) -> None:
        """``a/#`` delivers every topic below ``a`` and none beside it."""
        self._only_matching_arrive(
            make_transport, self.topic("a", "#"), self.topic("a", "probe"),
            matching=[self.topic("a", "b"), self.topic("a", "b", "c", "d"), self.topic("a", "marker")],
            other=[self.topic("ab", "c"), self.topic("b", "a"), self.topic("x", "a", "b")])

    @requires(Capability.WILDCARDS)
    def test_hash_matches_the_parent_level_itself(self, make_transport: TransportFactory) -> None:
        """``a/#`` also delivers ``a`` itself, as in MQTT."""
        self._only_matching_arrive(
            make_transport, self.topic("parent", "#"), self.topic("parent", "probe"),
            matching=[self.topic("parent"), self.topic("parent", "marker")], other=[self.topic("parents")])

    @requires(Capability.WILDCARDS)
    def test_plus_matches_exactly_one_level(self, make_transport: TransportFactory) -> None:
        """``+/c`` delivers ``x/c`` but not ``x/y/c``, ``c``, ``x/cc`` or ``x/c/d``."""
        self._only_matching_arrive(
            make_transport, self.topic("+", "c"), self.topic("probe", "c"),
            matching=[self.topic("x", "c"), self.topic("y", "c"), self.topic("marker", "c")],
            other=[self.topic("x", "y", "c"), self.topic("c"), self.topic("x", "cc"),
                   self.topic("x", "c", "d")])

    @requires(Capability.WILDCARDS)
    def test_plus_as_the_last_level(self, make_transport: TransportFactory) -> None:
        """``e/+`` delivers ``e/f`` but not ``e`` or ``e/f/g``."""
        self._only_matching_arrive(
            make_transport, self.topic("e", "+"), self.topic("e", "probe"),
            matching=[self.topic("e", "f"), self.topic("e", "marker")],
            other=[self.topic("e"), self.topic("e", "f", "g"), self.topic("ee", "f")])

    def test_every_subscriber_receives_its_own_copy(self, make_transport: TransportFactory) -> None:
        """Two transports subscribed to one topic both receive each message."""
        first, second = self.connected(make_transport), self.connected(make_transport)
        publisher = self.connected(make_transport)
        topic = self.topic("fan-out")
        inboxes = Inbox(), Inbox()
        first.subscribe(topic, inboxes[0])
        second.subscribe(topic, inboxes[1])
        self.await_subscription(publisher, topic, *inboxes)
        publisher.publish(topic, b"to everyone", qos=self.qos)
        for n, inbox in enumerate(inboxes, 1):
            assert inbox.wait_for_payload(b"to everyone", self.wait_timeout), f"subscriber {n} got nothing"

    # -- concurrency and handlers ---------------------------------------------------------------------

    @requires(Capability.QOS1)
    def test_sixteen_threads_publishing_at_once_lose_nothing(self, make_transport: TransportFactory) -> None:
        """16 threads publish 50 messages each on one transport at QoS 1; all 800 arrive."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("load")
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        threads, per_thread = 16, 50
        expected = {f"{n}-{i}".encode() for n in range(threads) for i in range(per_thread)}
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def publish_all(n: int) -> None:
            try:
                start.wait(self.wait_timeout)
                for i in range(per_thread):
                    publisher.publish(topic, f"{n}-{i}".encode(), qos=QoS.AT_LEAST_ONCE)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=publish_all, args=(n,), daemon=True) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(self.wait_timeout * 2)
        assert not any(w.is_alive() for w in workers), "publishing threads still running (deadlock?)"
        assert errors == []

        def distinct(messages: list[Message]) -> set[bytes]:
            return {m.payload for m in messages if not m.payload.startswith(_PROBE)}

        inbox.wait_for(lambda messages: len(distinct(messages)) >= len(expected), self.wait_timeout)
        got = distinct(inbox.messages)
        assert len(got & expected) == len(expected), f"{len(expected - got)} of {len(expected)} messages lost"
        assert got <= expected, "payloads that were never published arrived"

    def test_a_handler_may_publish_from_inside_the_handler(self, make_transport: TransportFactory) -> None:
        """A handler publishing on its own transport (a reply) neither deadlocks nor fails."""
        responder, requester = self.connected(make_transport), self.connected(make_transport)
        request_topic, reply_topic = self.topic("request"), self.topic("reply")
        errors: list[BaseException] = []

        def reply(message: Message) -> None:  # the same transport publishes from inside its own handler
            try:
                responder.publish(reply_topic, message.payload + b":reply", qos=QoS.AT_MOST_ONCE)
            except BaseException as exc:
                errors.append(exc)

        responder.subscribe(request_topic, reply)
        replies = Inbox()
        requester.subscribe(reply_topic, replies)

        def exchange() -> None:
            # A probe's reply proves both subscriptions and the handler's publish; a transport that calls
            # handlers while holding a lock that publish needs never gets one through, or never returns.
            self.await_subscription(requester, request_topic, replies)
            requester.publish(request_topic, b"ping", qos=self.qos)
            assert replies.wait_for_payload(b"ping:reply", self.wait_timeout), "no reply to ping"

        error = self.bounded(exchange, self.wait_timeout * 2 + self.liveness_margin,
                             "a request whose handler publishes the reply (deadlock?)")
        if error is not None:
            raise error
        assert errors == []

    def test_a_failing_handler_does_not_stop_delivery(self, make_transport: TransportFactory) -> None:
        """A handler that raises does not stop later deliveries, to it or to others."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        bad_topic, good_topic = self.topic("bad"), self.topic("good")
        failed = Inbox()

        def broken(message: Message) -> None:
            failed(message)
            raise RuntimeError("a handler failed on purpose (pca transport conformance test)")

        good = Inbox()
        subscriber.subscribe(bad_topic, broken)
        subscriber.subscribe(good_topic, good)
        self.await_subscription(publisher, good_topic, good)
        self.await_subscription(publisher, bad_topic, failed)
        publisher.publish(bad_topic, b"fails again", qos=self.qos)
        publisher.publish(good_topic, b"after the failures", qos=self.qos)
        assert good.wait_for_payload(b"after the failures", self.wait_timeout), (
            "nothing was delivered after a handler raised")
        assert failed.wait_for_payload(b"fails again", self.wait_timeout), (
            "the failing handler was not called again")

    # -- broker outages, failover, timeouts -----------------------------------------------------------

    def test_subscriptions_are_restored_after_a_broker_restart(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """After a broker restart the subscription works again unasked (reported as LOST, RECONNECTED)."""
        subscriber, publisher = make_transport(), self.connected(make_transport)
        log = StateLog()
        subscriber.add_state_listener(log)
        subscriber.connect()
        topic = self.topic("restored")
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        try:
            broker.restart()
        except BaseException:
            broker.start()
            raise
        if Capability.CONNECTION_STATE in self._capabilities:
            assert log.wait_for_sequence(ConnectionState.CONNECTED,
                                         (ConnectionState.LOST, ConnectionState.DISCONNECTED),
                                         ConnectionState.RECONNECTED, timeout=self.reconnect_timeout), (
                f"after a broker restart the subscriber reported {log.states}, expected LOST then "
                f"RECONNECTED")
        self.publish_eventually(publisher, topic, b"first after restart", self.reconnect_timeout)
        # Subscriptions may be restored just after RECONNECTED is reported: probe until one arrives.
        self.await_subscription(publisher, topic, inbox)
        publisher.publish(topic, b"after restart", qos=self.qos)
        assert inbox.wait_for_payload(b"after restart", self.wait_timeout), (
            "the subscription was not restored after the broker restart")

    def test_connect_fails_over_to_the_next_url(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """With a dead first URL, connect uses the next one, and messages flow."""
        failover = self.connected(make_transport, [broker.dead_url, broker.url])
        listener = self.connected(make_transport)
        topic = self.topic("failover")
        inbox, own = Inbox(), Inbox()
        listener.subscribe(topic, inbox)
        failover.subscribe(topic, own)
        self.await_subscription(failover, topic, inbox, own)
        failover.publish(topic, b"over the second url", qos=self.qos)
        assert inbox.wait_for_payload(b"over the second url", self.wait_timeout)
        assert own.wait_for_payload(b"over the second url", self.wait_timeout)

    def test_connect_to_an_unreachable_broker_raises_connection_failed(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """Connecting to a dead URL raises ConnectionFailed within ``connect_timeout`` (and a margin)."""
        transport = make_transport([broker.dead_url], connect_timeout=1)
        error = self.bounded(transport.connect, 1 + self.liveness_margin, "connect() to a dead URL")
        assert isinstance(error, ConnectionFailed), f"expected ConnectionFailed, got {error!r}"

    def test_the_connect_timeout_argument_bounds_connect(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """``connect(timeout=...)`` overrides ``connect_timeout``."""
        transport = make_transport([broker.dead_url], connect_timeout=1 + self.liveness_margin * 6)
        error = self.bounded(lambda: transport.connect(timeout=1), 1 + self.liveness_margin,
                             "connect(timeout=1) to a dead URL")
        assert isinstance(error, ConnectionFailed), f"expected ConnectionFailed, got {error!r}"

    def test_close_returns_within_its_timeout_when_the_broker_is_gone(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """``close(timeout=2)`` with the broker stopped returns in time, without raising."""
        transport = self.connected(make_transport)
        with self.outage(broker):
            error = self.bounded(lambda: transport.close(timeout=2), 2 + self.liveness_margin,
                                 "close(timeout=2) with the broker stopped")
        assert error is None, f"close() raised {error!r}"

    @requires(Capability.QOS1)
    def test_publish_while_the_broker_is_down_raises_instead_of_hanging(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """A QoS 1 publish with the broker stopped raises a TransportError within ``publish_timeout``."""
        transport = self.connected(make_transport, publish_timeout=2)
        with self.outage(broker):
            error = self.bounded(
                lambda: transport.publish(self.topic("down"), b"x", qos=QoS.AT_LEAST_ONCE),
                2 + self.liveness_margin, "publish() at QoS 1 with the broker stopped (publish_timeout=2)")
        assert isinstance(error, TransportError), (
            f"expected PublishTimeout or ConnectionFailed, got {error!r}")

    @requires(Capability.QOS1)
    def test_the_publish_timeout_argument_bounds_publish(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """``publish(timeout=...)`` overrides ``publish_timeout``."""
        transport = self.connected(make_transport, publish_timeout=1 + self.liveness_margin * 6)
        with self.outage(broker):
            error = self.bounded(
                lambda: transport.publish(self.topic("down"), b"x", qos=QoS.AT_LEAST_ONCE, timeout=2),
                2 + self.liveness_margin, "publish(timeout=2) at QoS 1 with the broker stopped")
        assert isinstance(error, TransportError), (
            f"expected PublishTimeout or ConnectionFailed, got {error!r}")

    # -- TLS ------------------------------------------------------------------------------------------

    def _tls_round_trip(self, make_transport: TransportFactory, broker: Broker, tls: dict[str, Any]) -> None:
        subscriber = self.connected(make_transport, [broker.url], tls=tls)
        publisher = self.connected(make_transport, [broker.url], tls=tls)
        topic = self.topic("tls")
        inbox = Inbox()
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        publisher.publish(topic, b"encrypted", qos=self.qos)
        assert inbox.wait_for_payload(b"encrypted", self.wait_timeout)

    @requires(Capability.TLS)
    def test_tls_round_trip_with_the_ca_file(
            self, _tls_broker: Broker, make_transport: TransportFactory) -> None:
        """Over TLS, with the test CA as ``tls.ca_file``, messages flow."""
        self._tls_round_trip(make_transport, _tls_broker, {"ca_file": _tls_broker.ca_file})

    @requires(Capability.TLS)
    def test_tls_refuses_a_certificate_no_trusted_ca_signed(
            self, _tls_broker: Broker, make_transport: TransportFactory) -> None:
        """Over TLS with the system CAs only, connecting to the test broker raises ConnectionFailed."""
        transport = make_transport([_tls_broker.url], tls={}, connect_timeout=5)
        error = self.bounded(transport.connect, 5 + self.liveness_margin,
                             "connect() over TLS to an untrusted certificate")
        assert isinstance(error, ConnectionFailed), (
            f"expected ConnectionFailed (the test CA is not a system CA), got {error!r}")

    @requires(Capability.TLS)
    def test_tls_without_verification_connects(
            self, _tls_broker: Broker, make_transport: TransportFactory) -> None:
        """Over TLS with ``verify = false``, messages flow without any CA."""
        self._tls_round_trip(make_transport, _tls_broker, {"verify": False})


class _StillRunning(Exception):
    pass


def _run_bounded(call: Callable[[], object], limit: float) -> BaseException | None:
    """Runs ``call`` on a daemon thread; returns what it raised, None, or _StillRunning after ``limit`` s."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="pca-conformance-bounded", daemon=True)
    thread.start()
    thread.join(limit)
    return outcome[0] if outcome else _StillRunning()


def _has_probe(messages: list[Message]) -> bool:
    return any(m.payload.startswith(_PROBE) for m in messages)


def _lookup(request: pytest.FixtureRequest, name: str, default: _R) -> _R:
    """The value of fixture ``name`` if one is defined (class, module or conftest), else ``default``."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError as exc:
        if exc.argname != name:
            raise
        return default
