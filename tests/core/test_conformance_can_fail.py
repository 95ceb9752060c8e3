"""The conformance suite's tests of unsubscribe, acknowledgement and redelivery fail for transports that
break the contract, and pass for one that keeps it (in-process variants of the memory transport)."""

pytest_plugins = ["pytester"]

TRANSPORTS = '''
import uuid

import pytest
from pca_core.api import Capability, Message, QoS, topic_matches
from pca_core.builtin.memory import MemoryTransport
from pca_core.testing import MemoryBroker, TransportConformance


class Sessions(MemoryTransport):
    """Keeps, per client id, what its handlers did not acknowledge, and delivers it again on connect."""

    capabilities = MemoryTransport.capabilities | {Capability.REDELIVERY}
    kept = {}
    redeliver = True
    forget_acknowledged = True

    def subscribe(self, pattern, handler, *, qos=QoS.AT_LEAST_ONCE):
        records = self.kept.setdefault(self.config.client_id, [])

        def keep(message):
            record = [message.topic, message.payload, False]
            records.append(record)
            handler(Message(message.topic, message.payload, lambda: record.__setitem__(2, True)))

        return super().subscribe(pattern, keep, qos=qos)

    def connect(self, timeout=None):
        super().connect(timeout)
        records = self.kept.get(self.config.client_id, [])
        again = [r for r in records if self.redeliver and not (self.forget_acknowledged and r[2])]
        records.clear()
        for topic, payload, _ in again:
            for subscription in list(self._subscriptions):
                if topic_matches(subscription.pattern, topic):
                    subscription.handler(Message(topic, payload))


class NoRedelivery(Sessions):
    redeliver = False


class RedeliversEverything(Sessions):
    forget_acknowledged = False


class KeepsDelivering(MemoryTransport):
    """unsubscribe() does nothing."""

    def unsubscribe(self, subscription):
        pass


class AckRaises(MemoryTransport):
    def publish(self, topic, payload, **kw):
        if not isinstance(payload, bytes):
            raise TypeError("payload must be bytes")

        def settle():
            raise RuntimeError("settle failed")

        self._bus.deliver(Message(topic, payload, settle))


class Suite(TransportConformance):
    plugin = "memory"
    wait_timeout = 2.0  # in-process: what comes at all comes at once; a failing wait should not take long

    @pytest.fixture
    def broker(self):
        broker = MemoryBroker()
        yield broker
        broker.close()

    @pytest.fixture
    def redelivery_settings(self):
        return {"client_id": uuid.uuid4().hex}


def built(cls):
    return pytest.fixture(lambda self: cls)


class TestSessions(Suite):
    transport_class = built(Sessions)


class TestNoRedelivery(Suite):
    transport_class = built(NoRedelivery)


class TestRedeliversEverything(Suite):
    transport_class = built(RedeliversEverything)


class TestKeepsDelivering(Suite):
    transport_class = built(KeepsDelivering)


class TestAckRaises(Suite):
    transport_class = built(AckRaises)
'''

NEW_TESTS = "unsubscribe or ended_subscription or acknowledg or delivered_again"


def failed(result) -> set[str]:
    return {line.split("::", 1)[1].split(" ")[0] for line in result.outlines if line.startswith("FAILED ")}


def test_each_new_test_fails_for_a_transport_that_breaks_its_rule_and_passes_for_one_that_keeps_it(pytester):
    pytester.makepyfile(TRANSPORTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rf", "-k", NEW_TESTS)
    assert failed(result) == {
        "TestNoRedelivery::test_a_message_not_acknowledged_is_delivered_again_to_the_next_transport",
        "TestRedeliversEverything::test_an_acknowledged_message_is_not_delivered_again",
        "TestRedeliversEverything::test_acknowledgements_from_another_thread_in_any_order_all_count",
        "TestKeepsDelivering::test_unsubscribe_ends_one_subscription_and_another_to_the_same_pattern_goes_on",
        "TestKeepsDelivering::test_unsubscribe_is_idempotent_and_the_pattern_can_be_subscribed_again",
        "TestKeepsDelivering::test_an_ended_subscription_stays_ended_after_a_broker_restart",
        "TestAckRaises::test_every_message_can_be_acknowledged_from_another_thread_twice",
    }, result.stdout.str()
    # Seven tests in each of five classes; the three of redelivery skip the two classes without it.
    result.assert_outcomes(passed=22, failed=7, skipped=6)


def test_a_class_declaring_redelivery_must_provide_redelivery_settings(pytester):
    pytester.makepyfile("""
        import pytest
        from pca_core.api import Capability
        from pca_core.builtin.memory import MemoryTransport
        from pca_core.testing import MemoryBroker, TransportConformance

        class ClaimsRedelivery(MemoryTransport):
            capabilities = MemoryTransport.capabilities | {Capability.REDELIVERY}

        class TestClaimsRedelivery(TransportConformance):
            plugin = "memory"

            @pytest.fixture
            def transport_class(self):
                return ClaimsRedelivery

            @pytest.fixture
            def broker(self):
                return MemoryBroker()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "delivered_again or any_order")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*declares capability 'redelivery', so the class must provide a "
                                 "redelivery_settings fixture*"])
