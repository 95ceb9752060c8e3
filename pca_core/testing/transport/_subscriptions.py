"""Ending subscriptions: ``unsubscribe`` stops its handler at once and for good, and nothing else."""

from __future__ import annotations

from pca_core.api.plugin import Capability
from pca_core.api.transport import ConnectionState
from pca_core.testing.broker import Broker
from pca_core.testing.transport._base import ConformanceBase, TransportFactory
from pca_core.testing.waiting import Inbox, StateLog

__all__ = ["SubscriptionTests"]


class SubscriptionTests(ConformanceBase):
    """``unsubscribe``: no delivery after it returned, other subscriptions unharmed, idempotent, lasting."""

    def test_unsubscribe_ends_one_subscription_and_another_to_the_same_pattern_goes_on(
            self, make_transport: TransportFactory) -> None:
        """No message published after ``unsubscribe`` returned reaches its handler; the other one's does."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("unsubscribed")
        ended, kept = Inbox(), Inbox()
        subscription = subscriber.subscribe(topic, ended)
        subscriber.subscribe(topic, kept)
        self.await_subscription(publisher, topic, ended, kept)
        publisher.publish(topic, b"before", qos=self.qos)
        for inbox in (ended, kept):
            assert inbox.wait_for_payload(b"before", self.wait_timeout), "a subscriber missed b'before'"
        subscriber.unsubscribe(subscription)
        after = [b"after %d" % i for i in range(3)]
        for payload in after:
            publisher.publish(topic, payload, qos=self.qos)
        assert kept.wait_for_payload(after[-1], self.wait_timeout), (
            "the other subscription to the same pattern stopped receiving after one was unsubscribed")
        late = [p for p in ended.payloads if p in after]
        assert late == [], f"published after unsubscribe() returned, yet delivered to its handler: {late}"

    def test_unsubscribe_is_idempotent_and_the_pattern_can_be_subscribed_again(
            self, make_transport: TransportFactory) -> None:
        """Unsubscribing twice does nothing more; a new subscription to the pattern then receives."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("resubscribed")
        first = Inbox()
        subscription = subscriber.subscribe(topic, first)
        self.await_subscription(publisher, topic, first)
        subscriber.unsubscribe(subscription)
        subscriber.unsubscribe(subscription)
        second = Inbox()
        subscriber.subscribe(topic, second)
        self.await_subscription(publisher, topic, second)
        publisher.publish(topic, b"again", qos=self.qos)
        assert second.wait_for_payload(b"again", self.wait_timeout), "the new subscription received nothing"
        assert b"again" not in first.payloads, "the ended subscription received a message"

    def test_an_ended_subscription_stays_ended_after_a_broker_restart(
            self, broker: Broker, make_transport: TransportFactory) -> None:
        """The subscriptions restored after a reconnect are those not unsubscribed."""
        subscriber, publisher = make_transport(), self.connected(make_transport)
        log = StateLog()
        subscriber.add_state_listener(log)
        subscriber.connect()
        ended_topic, kept_topic = self.topic("ended"), self.topic("kept")
        ended, kept = Inbox(), Inbox()
        subscription = subscriber.subscribe(ended_topic, ended)
        subscriber.subscribe(kept_topic, kept)
        self.await_subscription(publisher, ended_topic, ended)
        self.await_subscription(publisher, kept_topic, kept)
        subscriber.unsubscribe(subscription)
        try:
            broker.restart()
        except BaseException:
            broker.start()
            raise
        if Capability.CONNECTION_STATE in self._capabilities:
            assert log.wait_for_sequence(ConnectionState.LOST, ConnectionState.RECONNECTED,
                                         timeout=self.reconnect_timeout), log.states
        self.publish_eventually(publisher, kept_topic, b"first after restart", self.reconnect_timeout)
        self.await_subscription(publisher, kept_topic, kept)
        publisher.publish(ended_topic, b"ended", qos=self.qos)
        publisher.publish(kept_topic, b"marker", qos=self.qos)
        assert kept.wait_for_payload(b"marker", self.wait_timeout), "the kept subscription was not restored"
        assert b"ended" not in ended.payloads, "a subscription ended before the restart was restored"
