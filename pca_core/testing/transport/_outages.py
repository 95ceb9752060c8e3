"""Outages, failover and timeouts: the broker goes away, a URL is dead, a call must return in time; TLS."""

from __future__ import annotations

from typing import Any

from pca_core.api.errors import ConnectionFailed, TransportError
from pca_core.api.plugin import Capability
from pca_core.api.transport import ConnectionState, QoS
from pca_core.testing.broker import Broker
from pca_core.testing.transport._base import ConformanceBase, TransportFactory, requires
from pca_core.testing.waiting import Inbox, StateLog

__all__ = ["OutageTests"]


class OutageTests(ConformanceBase):
    """Broker restarts, failover, unreachable brokers, bounded calls, and TLS."""

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
