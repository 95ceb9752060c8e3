"""Handlers and threads: concurrent publishers, handlers that publish or raise, acknowledgements."""

from __future__ import annotations

import threading

from pca_core.api.plugin import Capability
from pca_core.api.transport import Message, QoS
from pca_core.testing.transport._base import PROBE, ConformanceBase, TransportFactory, requires
from pca_core.testing.waiting import Inbox

__all__ = ["HandlerTests"]


class HandlerTests(ConformanceBase):
    """What the transport must bear from the threads around it and from its handlers."""

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
            return {m.payload for m in messages if not m.payload.startswith(PROBE)}

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

    def test_every_message_can_be_acknowledged_from_another_thread_twice(
            self, make_transport: TransportFactory) -> None:
        """Acknowledging each received message twice, from another thread, neither raises nor waits."""
        subscriber, publisher = self.connected(make_transport), self.connected(make_transport)
        topic = self.topic("acknowledged")
        inbox = Inbox(ack=False)
        subscriber.subscribe(topic, inbox)
        self.await_subscription(publisher, topic, inbox)
        payloads = {b"handled %d" % i for i in range(5)}
        for payload in sorted(payloads):
            publisher.publish(topic, payload, qos=self.qos)
        arrived = inbox.wait_for(lambda ms: payloads <= {m.payload for m in ms}, self.wait_timeout)
        assert arrived, f"expected {sorted(payloads)}, got {inbox.payloads}"
        messages = inbox.messages

        def acknowledge_all_twice() -> None:
            for message in messages:
                message.ack()
            for message in reversed(messages):
                message.ack()

        error = self.bounded(acknowledge_all_twice, self.wait_timeout,
                             "Message.ack() twice for each message, from another thread")
        assert error is None, f"Message.ack() raised {error!r}"
        publisher.publish(topic, b"after the acknowledgements", qos=self.qos)
        assert inbox.wait_for_payload(b"after the acknowledgements", self.wait_timeout), (
            "nothing was delivered after the messages were acknowledged")
