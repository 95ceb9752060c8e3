"""The amqp transport against real RabbitMQ nodes: settlement, MQTT interop, bodies, errors, logging.

The conformance suite (test_amqp_conformance.py) covers the contract; these cover what is AMQP's own.
"""

from __future__ import annotations

import logging
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pca_amqp import AmqpTransport
from proton import Message as AmqpMessage
from proton.utils import BlockingConnection

from pca_core import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionState,
    Secret,
    TlsConfig,
    TransportError,
)
from pca_core.testing import Inbox, StateLog
from tests.support.mosquitto import Mosquitto
from tests.support.rabbitmq import RabbitMQ
from tests.support.transports import transports
from tests.support.waiting import wait_until


@pytest.fixture
def make_amqp():
    """``make_amqp(*urls, **settings)``: an unconnected amqp transport, closed at the end of the test.

    Settings go to TransportConfig or AmqpOptions by name; reconnects are fast unless overridden.
    """
    yield from transports(AmqpTransport, "amqp")


def _topic() -> str:
    return f"pca-test/{uuid.uuid4().hex[:12]}"


def _queue_counts(node: RabbitMQ) -> list[tuple[int, int]]:
    """(ready, unacknowledged) of every queue of the node that holds a message."""
    result = node.ctl("list_queues", "--no-table-headers", "messages_ready", "messages_unacknowledged")
    counts = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and all(f.isdigit() for f in fields):
            ready, unacked = int(fields[0]), int(fields[1])
            if ready or unacked:
                counts.append((ready, unacked))
    return counts


# -- settlement -------------------------------------------------------------------------------------------

def test_a_message_is_settled_only_once_acknowledged_and_prefetch_bounds_the_unsettled(broker, make_amqp):
    """With prefetch 2 and nothing acknowledged, the broker holds the rest; each ack lets one more through."""
    subscriber, publisher = make_amqp(broker.url, prefetch=2), make_amqp(broker.url)
    subscriber.connect()
    publisher.connect()
    topic = _topic()
    held = Inbox(ack=False)
    subscriber.subscribe(topic, held)  # connected: returns once the broker attached the link (its queue)
    for i in range(5):
        publisher.publish(topic, b"m%d" % i)
    assert wait_until(lambda: len(held.messages) == 2)
    assert wait_until(lambda: _queue_counts(broker) == [(3, 2)], timeout=20), _queue_counts(broker)
    held.messages[0].ack()
    assert wait_until(lambda: len(held.messages) == 3)
    assert wait_until(lambda: _queue_counts(broker) == [(2, 2)], timeout=20), _queue_counts(broker)
    assert held.payloads == [b"m0", b"m1", b"m2"]
    for _ in range(2):
        for message in held.messages:
            message.ack()
        assert wait_until(lambda: len(held.messages) == 5 or _queue_counts(broker) == [], timeout=20)
    for message in held.messages:
        message.ack()
    assert wait_until(lambda: _queue_counts(broker) == [], timeout=20), _queue_counts(broker)
    assert held.payloads == [b"m%d" % i for i in range(5)]


# -- interoperability -------------------------------------------------------------------------------------

class _MqttClient:
    """A paho client of the node's MQTT plugin, as a Stratos control plane speaking MQTT would be."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plane-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set("guest", "guest")
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_an_mqtt_control_plane_and_an_amqp_agent_reach_each_other_on_one_rabbitmq(rabbitmq, make_amqp):
    """A topic published over MQTT arrives over AMQP with the same canonical topic, and the other way."""
    rabbitmq.start()
    agent = make_amqp(rabbitmq.url)
    agent.connect()
    root = _topic()
    inbox = Inbox()
    agent.subscribe(f"{root}/topology/#", inbox)
    plane = _MqttClient(rabbitmq.mqtt_port)
    try:
        plane.client.subscribe(f"{root}/instance/status/#", qos=1)
        assert plane.subscribed.wait(10)
        payload = b'{"memberId": "php.member-1"}'
        plane.client.publish(f"{root}/topology/MemberActivatedEvent", payload, qos=1).wait_for_publish(10)
        message = inbox.wait_for_payload(payload, 10)
        assert message is not None and message.topic == f"{root}/topology/MemberActivatedEvent"
        agent.publish(f"{root}/instance/status/InstanceStartedEvent", b"started")
        assert wait_until(lambda: plane.received == [(f"{root}/instance/status/InstanceStartedEvent",
                                                      b"started")])
    finally:
        plane.close()


def test_text_bodies_arrive_as_utf8_and_a_message_without_a_routing_key_is_dropped_once(
        broker, make_amqp, caplog):
    """A string body (a JMS text message, say) arrives as UTF-8; on a wildcard without any routing key,
    the message is dropped with one warning."""
    caplog.set_level(logging.WARNING, logger="pca_amqp")
    agent = make_amqp(broker.url)
    agent.connect()
    root = _topic()
    exact, wildcard = Inbox(), Inbox()
    agent.subscribe(f"{root}/text", exact)
    agent.subscribe(f"{root}/keyless/#", wildcard)
    connection = BlockingConnection(broker.url)
    try:
        to_exact = connection.create_sender(f"/topic/{root.replace('/', '.')}.text")
        to_exact.send(AmqpMessage(body="ünïcode text"))
        to_wildcard = connection.create_sender(f"/topic/{root.replace('/', '.')}.keyless.x")
        for _ in range(2):
            to_wildcard.send(AmqpMessage(body=b"no key"))
        to_wildcard.send(AmqpMessage(body=b"keyed", subject=f"{root.replace('/', '.')}.keyless.y"))
    finally:
        connection.close()
    message = exact.wait_for_payload("ünïcode text".encode(), 10)
    assert message is not None and message.topic == f"{root}/text"
    keyed = wildcard.wait_for_payload(b"keyed", 10)
    assert keyed is not None and keyed.topic == f"{root}/keyless/y"
    assert wildcard.payloads == [b"keyed"]
    dropped = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(dropped) == 1 and "no routing key" in dropped[0], dropped


# -- errors an operator can act on ------------------------------------------------------------------------

def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_wrong_credentials_say_so_and_never_show_the_password(broker, make_amqp):
    user, password = f"agent-{uuid.uuid4().hex[:8]}", "Sup3r-s3cret-pw"
    broker.add_user(user, password)
    wrong = "Wr0ng-" + password
    transport = make_amqp(broker.url, username=user, password=Secret(wrong))
    with pytest.raises(AuthenticationError) as raised:
        transport.connect(timeout=10)
    text = _one_line(raised.value)
    assert f"credentials refused (user {user!r}" in text and "check transport.username" in text
    in_url = make_amqp(broker.url.replace("amqp://", f"amqp://{user}:{wrong}@"))
    with pytest.raises(AuthenticationError) as raised:
        in_url.connect(timeout=10)
    assert wrong not in str(raised.value) and password not in str(raised.value)
    right = make_amqp(broker.url.replace("amqp://", f"amqp://{user}:{password}@"))
    right.connect(timeout=10)
    right.publish(_topic(), b"accepted")


def test_a_broker_without_the_amqp_1_0_plugin_says_how_to_enable_it(bare_rabbitmq, make_amqp):
    transport = make_amqp(bare_rabbitmq.url)
    with pytest.raises(ConnectionFailed) as raised:
        transport.connect(timeout=10)
    assert "rabbitmq-plugins enable rabbitmq_amqp1_0" in _one_line(raised.value)


def test_a_port_that_does_not_speak_amqp_says_to_check_the_port(tmp_path, make_amqp):
    with Mosquitto(tmp_path / "mosquitto") as mosquitto:
        transport = make_amqp(f"amqp://127.0.0.1:{mosquitto.port}")
        with pytest.raises(ConnectionFailed) as raised:
            transport.connect(timeout=10)
    text = _one_line(raised.value)
    assert "did not answer as an AMQP 1.0 broker" in text and "check the port" in text


def test_a_subscription_the_broker_refuses_raises_with_its_reason(broker, make_amqp):
    """An address on a missing exchange: subscribe and publish raise; the connection itself stays up."""
    transport = make_amqp(broker.url, address_prefix="/exchange/no-such-exchange/")
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect()
    for _ in range(2):  # the second answer proves the connection outlived the first refusal
        with pytest.raises(TransportError) as raised:
            transport.subscribe("a/#", Inbox())
        text = _one_line(raised.value)
        assert "refused the subscription to 'a/#'" in text and "/exchange/no-such-exchange/a.#" in text
        with pytest.raises(TransportError, match=r"refused /exchange/no-such-exchange/a\.b"):
            transport.publish("a/b", b"nowhere")
    assert states.states == [ConnectionState.CONNECTED]


# -- logging ----------------------------------------------------------------------------------------------

def test_failover_and_restored_subscriptions_are_logged_once_without_credentials(broker, make_amqp, caplog):
    caplog.set_level(logging.DEBUG, logger="pca_amqp")
    secret = "Sup3r-s3cret-pw"
    dead = broker.dead_url.replace("amqp://", f"amqp://someone:{secret}@")
    transport = make_amqp(dead, broker.url, client_id="pca-log-test")
    transport.subscribe("pca-test/a/#", Inbox())
    transport.connect(timeout=10)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert info == [f"amqp: skipped {broker.dead_url} (connection refused); trying {broker.url}",
                    f"amqp: connected to {broker.url} as 'pca-log-test'; subscribed to 1 patterns"], info
    caplog.clear()
    broker.restart()
    assert wait_until(lambda: any("reconnected" in r.getMessage() for r in caplog.records), timeout=30)
    reconnected = [r.getMessage() for r in caplog.records if "reconnected" in r.getMessage()]
    assert reconnected == [f"amqp: reconnected to {broker.url} as 'pca-log-test'; 1 subscriptions restored"]
    assert secret not in caplog.text and "someone" not in caplog.text


def test_tls_checks_the_brokers_name_unless_verification_is_off(tmp_path, test_ca, make_amqp):
    """A certificate from the trusted CA for another name is refused; with ``verify = false`` it is not."""
    elsewhere = test_ca.issue("elsewhere", dns=("elsewhere.example",), ips=())
    with RabbitMQ(tmp_path / "rabbitmq", tls=elsewhere, ca_file=test_ca.ca_file, host="localhost") as node:
        checked = make_amqp(node.url, tls=TlsConfig(ca_file=str(test_ca.ca_file)), connect_timeout=5)
        with pytest.raises(ConnectionFailed) as raised:
            checked.connect(timeout=10)
        assert "TLS failed" in _one_line(raised.value)
        unchecked = make_amqp(node.url, tls=TlsConfig(verify=False))
        unchecked.connect(timeout=10)
        unchecked.publish(_topic(), b"encrypted, not authenticated")
