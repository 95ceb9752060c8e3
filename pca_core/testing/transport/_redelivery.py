"""Redelivery: a message received but not acknowledged comes again to the next transport that takes over."""

from __future__ import annotations

from typing import Any

import pytest

from pca_core.api.plugin import Capability
from pca_core.api.transport import Handler, Message, QoS, Transport
from pca_core.testing.transport._base import (
    PROBE,
    ConformanceBase,
    TransportFactory,
    lookup_fixture,
    requires,
)
from pca_core.testing.waiting import Inbox

__all__ = ["RedeliveryTests"]


class RedeliveryTests(ConformanceBase):
    """With :attr:`Capability.REDELIVERY`: acknowledged messages are done with, the others come again.

    Each test runs two subscribers one after the other, built with the ``redelivery_settings`` fixture so
    that the second takes over the first one's subscription (for MQTT: the same client id and a persistent
    session). The second subscribes before it connects, as the agent does, so a message redelivered at
    once has its handler.
    """

    @pytest.fixture
    def _redelivery_settings(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        # Looked up only after the capability check, so a plugin without redelivery needs no fixture.
        settings = lookup_fixture(request, "redelivery_settings", None)
        if settings is None:
            pytest.fail(f"{type(self).__name__}: plugin {self.plugin!r} declares capability 'redelivery', so "
                        f"the class must provide a redelivery_settings fixture: the make_transport() "
                        f"settings with which a second transport takes over the subscription of a first one "
                        f"that was closed (for MQTT: a fixed client_id and a persistent session)",
                        pytrace=False)
        settings = dict(settings)
        if "options" in settings:  # added to the class's transport_options, not instead of them
            settings["options"] = {**lookup_fixture(request, "transport_options", {}), **settings["options"]}
        return settings

    def _take_over(self, make_transport: TransportFactory, settings: dict[str, Any], topic: str,
                   handler: Handler) -> None:
        transport = make_transport(**settings)
        transport.subscribe(topic, handler, qos=QoS.AT_LEAST_ONCE)
        transport.connect()

    @requires(Capability.REDELIVERY)
    def test_a_message_not_acknowledged_is_delivered_again_to_the_next_transport(
            self, _redelivery_settings: dict[str, Any], make_transport: TransportFactory) -> None:
        """Received, never acknowledged, its subscriber closed: the next subscriber receives it again."""
        publisher = self.connected(make_transport)
        topic = self.topic("not-acknowledged")
        held = Inbox(ack=False)
        first = make_transport(**_redelivery_settings)
        first.subscribe(topic, _acknowledging_probes_only(held), qos=QoS.AT_LEAST_ONCE)
        first.connect()
        self.await_subscription(publisher, topic, held)
        publisher.publish(topic, b"not acknowledged", qos=QoS.AT_LEAST_ONCE)
        assert held.wait_for_payload(b"not acknowledged", self.wait_timeout), "the message did not arrive"
        first.close(self.close_timeout)
        again = Inbox()
        self._take_over(make_transport, _redelivery_settings, topic, again)
        assert again.wait_for_payload(b"not acknowledged", self.wait_timeout), (
            "a message received but not acknowledged was not delivered again to the next transport with the "
            "same redelivery_settings")

    @requires(Capability.REDELIVERY)
    def test_an_acknowledged_message_is_not_delivered_again(
            self, _redelivery_settings: dict[str, Any], make_transport: TransportFactory) -> None:
        """Received and acknowledged, then its subscriber closed: the next subscriber does not get it."""
        publisher = self.connected(make_transport)
        topic = self.topic("acknowledged")
        handled = Inbox(ack=False)
        first = make_transport(**_redelivery_settings)
        first.subscribe(topic, _acknowledging_probes_only(handled), qos=QoS.AT_LEAST_ONCE)
        first.connect()
        self.await_subscription(publisher, topic, handled)
        publisher.publish(topic, b"acknowledged", qos=QoS.AT_LEAST_ONCE)
        message = handled.wait_for_payload(b"acknowledged", self.wait_timeout)
        assert message is not None, "the message did not arrive"
        message.ack()  # returned before close() starts, as the agent's dispatcher stops before its transport
        first.close(self.close_timeout)
        self._assert_none_again(make_transport, _redelivery_settings, publisher, topic, {b"acknowledged"})

    @requires(Capability.REDELIVERY)
    def test_acknowledgements_from_another_thread_in_any_order_all_count(
            self, _redelivery_settings: dict[str, Any], make_transport: TransportFactory) -> None:
        """Acknowledged in reverse order, twice, from another thread: none comes again, delivery goes on."""
        publisher = self.connected(make_transport)
        topic = self.topic("out-of-order")
        held = Inbox(ack=False)
        first = make_transport(**_redelivery_settings)
        first.subscribe(topic, held, qos=QoS.AT_LEAST_ONCE)
        first.connect()
        self.await_subscription(publisher, topic, held)
        payloads = [b"handled %d" % i for i in range(5)]
        for payload in payloads:
            publisher.publish(topic, payload, qos=QoS.AT_LEAST_ONCE)
        arrived = held.wait_for(lambda ms: set(payloads) <= {m.payload for m in ms}, self.wait_timeout)
        assert arrived, f"expected {payloads}, got {held.payloads}"

        def acknowledge_all() -> None:
            for _ in range(2):
                for message in reversed(held.messages):
                    message.ack()

        error = self.bounded(acknowledge_all, self.wait_timeout, "Message.ack() from another thread")
        assert error is None, f"Message.ack() raised {error!r}"
        publisher.publish(topic, b"after the acknowledgements", qos=QoS.AT_LEAST_ONCE)
        assert held.wait_for_payload(b"after the acknowledgements", self.wait_timeout), (
            "nothing was delivered after messages were acknowledged out of order")
        error = self.bounded(acknowledge_all, self.wait_timeout, "Message.ack() from another thread")
        assert error is None, f"Message.ack() raised {error!r}"
        first.close(self.close_timeout)
        self._assert_none_again(make_transport, _redelivery_settings, publisher, topic,
                                {*payloads, b"after the acknowledgements"})

    def _assert_none_again(self, make_transport: TransportFactory, settings: dict[str, Any],
                           publisher: Transport, topic: str, done: set[bytes]) -> None:
        """Takes over the subscription; fails if any of ``done`` arrives before a marker published after."""
        again = Inbox()
        self._take_over(make_transport, settings, topic, again)
        self.await_subscription(publisher, topic, again)
        publisher.publish(topic, b"marker", qos=QoS.AT_LEAST_ONCE)
        assert again.wait_for_payload(b"marker", self.wait_timeout), "the next transport received nothing"
        repeated = sorted(p for p in again.payloads if p in done)
        assert repeated == [], f"acknowledged messages were delivered again: {repeated}"


def _acknowledging_probes_only(inbox: Inbox) -> Handler:
    """A handler that records every message in ``inbox`` (made with ``ack=False``) and acknowledges probes."""

    def handle(message: Message) -> None:
        inbox(message)
        if message.payload.startswith(PROBE):
            message.ack()

    return handle
