"""Publishing and subscribing: payloads and topics round trip, misuse raises, wildcards match as in MQTT."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from pca_core.api.errors import TransportError
from pca_core.api.plugin import Capability
from pca_core.api.transport import ConnectionState, Message
from pca_core.testing.transport._base import ConformanceBase, TransportFactory, requires
from pca_core.testing.waiting import Inbox, StateLog, wait_until

__all__ = ["MessagingTests"]


class MessagingTests(ConformanceBase):
    """Round trips, misuse, the state listener, wildcards and fan-out."""

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
