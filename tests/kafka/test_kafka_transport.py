"""The kafka transport against real Tansu brokers: where a group starts and resumes, errors, logging.

The conformance suite (test_kafka_conformance.py) covers the contract; these cover what is Kafka's own.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from pca_kafka import KafkaTransport

from pca_core import AuthenticationError, ConnectionFailed, TransportError
from pca_core.api import TlsConfig
from pca_core.testing import Inbox
from tests.kafka.conftest import SASL_USER
from tests.support.transports import transports
from tests.support.waiting import wait_until

FAST = {"metadata_max_age": 0.2}  # a new topic is noticed within 0.2 s


@pytest.fixture
def make_kafka():
    """``make_kafka(*urls, **settings)``: an unconnected kafka transport, closed at the end of the test."""
    yield from transports(KafkaTransport, "kafka")


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_first_start_reads_from_the_end_a_new_topic_from_its_start_a_restart_resumes(broker, make_kafka):
    """What a group skips and what it does not, across a first start, a new topic and a restart."""
    root = f"pca-test/{uuid.uuid4().hex[:8]}"
    publisher = make_kafka(broker.url, **FAST)
    publisher.connect()
    publisher.publish(f"{root}/old", b"before the agent ever started")
    group = f"pca-agent-{uuid.uuid4().hex[:8]}"
    agent, inbox = make_kafka(broker.url, client_id=group, **FAST), Inbox()
    agent.subscribe(f"{root}/#", inbox)
    agent.connect()  # returns once the consumer assigned itself what the pattern matches
    publisher.publish(f"{root}/old", b"after the start")
    publisher.publish(f"{root}/new", b"on a topic created after the start")
    assert inbox.wait_for(lambda ms: {m.payload for m in ms} >= {b"after the start",
                                                                  b"on a topic created after the start"}, 20)
    assert b"before the agent ever started" not in inbox.payloads
    agent.close()
    publisher.publish(f"{root}/old", b"while the agent was away")
    again, resumed = make_kafka(broker.url, client_id=group, **FAST), Inbox()
    again.subscribe(f"{root}/#", resumed)
    again.connect()
    assert resumed.wait_for_payload(b"while the agent was away", 20)
    publisher.publish(f"{root}/new", b"marker")
    assert resumed.wait_for_payload(b"marker", 20)
    assert sorted(resumed.payloads) == [b"marker", b"while the agent was away"], "handled messages came again"


def test_unreachable_bootstrap_servers_say_so_within_the_timeout(broker, make_kafka):
    transport = make_kafka(broker.dead_url)
    with pytest.raises(ConnectionFailed) as raised:
        transport.connect(timeout=2)
    text = _one_line(raised.value)
    assert f"no bootstrap server answered ({broker.dead_url})" in text and "check transport.urls" in text


@pytest.mark.parametrize("fixture", ["sasl_broker", "sasl_tls_broker"])
def test_sasl_plain_credentials_are_accepted_over_plain_tcp_and_tls(fixture, request, make_kafka):
    broker = request.getfixturevalue(fixture)
    user, password = SASL_USER
    tls = TlsConfig(ca_file=broker.ca_file) if broker.ca_file else None
    transports = [make_kafka(broker.url, username=user, password=password, tls=tls, **FAST) for _ in "ab"]
    subscriber, publisher = transports
    inbox = Inbox()
    subscriber.subscribe("pca-test/sasl/#", inbox)
    subscriber.connect()
    publisher.connect()
    publisher.publish("pca-test/sasl/one", b"authenticated")
    assert inbox.wait_for_payload(b"authenticated", 20)
    assert set(broker.sasl_proxy.attempts) == {(user, True)}


def test_refused_credentials_say_so_in_one_line_without_the_password(sasl_broker, make_kafka, caplog):
    caplog.set_level(logging.DEBUG)
    transport = make_kafka(sasl_broker.url, username="agent", password="not-the-Pa55word")
    with pytest.raises(AuthenticationError) as raised:
        transport.connect(timeout=3)
    text = _one_line(raised.value)
    assert f"kafka: {sasl_broker.url} refused the credentials of user 'agent'" in text
    assert "check transport.username and transport.password" in text
    assert sasl_broker.sasl_proxy.attempts[-1] == ("agent", False)
    assert "not-the-Pa55word" not in text + caplog.text


def test_an_oversized_message_is_refused_with_the_limit_and_nothing_else_is_lost(broker, make_kafka):
    topic = f"pca-test/{uuid.uuid4().hex[:8]}"
    publisher = make_kafka(broker.url, max_request_size=10_000, **FAST)
    subscriber, inbox = make_kafka(broker.url, **FAST), Inbox()
    subscriber.subscribe(topic, inbox)
    subscriber.connect()
    publisher.connect()
    publisher.publish(topic, b"before")
    with pytest.raises(TransportError) as raised:
        publisher.publish(topic, b"x" * 20_000)
    assert "options.max_request_size = 10000" in _one_line(raised.value)
    publisher.publish(topic, b"after")
    assert inbox.wait_for(lambda ms: [m.payload for m in ms] == [b"before", b"after"], 20), inbox.payloads


def test_the_connection_is_logged_once(broker, make_kafka, caplog):
    caplog.set_level(logging.INFO, logger="pca_kafka")
    transport = make_kafka(broker.url, client_id="pca-log-test", **FAST)
    transport.subscribe("pca-test/logged/#", Inbox())
    transport.connect()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [
        f"kafka: connected to {broker.url} as 'pca-log-test' (group 'pca-log-test')"]


@pytest.mark.parametrize("later", ["exact", "wildcard"])
def test_a_subscription_made_later_reads_an_existing_topic_from_the_end(broker, make_kafka, later):
    """Subscribing after the start skips what an existing topic already held, as a first start does, even
    for a topic created after the start."""
    root = f"pca-test/{uuid.uuid4().hex[:8]}"
    agent = make_kafka(broker.url, **FAST)
    agent.subscribe(f"{root}/first", Inbox())
    agent.connect()
    publisher = make_kafka(broker.url, **FAST)
    publisher.connect()
    publisher.publish(f"{root}/existing", b"before the subscription")  # a topic new since the start
    inbox = Inbox()
    agent.subscribe(f"{root}/existing" if later == "exact" else f"{root}/+", inbox)
    assert wait_until(lambda: _publish_and_see(publisher, f"{root}/existing", inbox), 20)
    assert b"before the subscription" not in inbox.payloads


def _publish_and_see(publisher: KafkaTransport, topic: str, inbox: Inbox) -> bool:
    """Publishes a marker and waits briefly for it: True once the subscription delivers."""
    marker = uuid.uuid4().hex.encode()
    publisher.publish(topic, marker)
    return inbox.wait_for_payload(marker, 1.0) is not None
