"""The test-owned RabbitMQ nodes themselves, checked with a raw proton client."""

from __future__ import annotations

import uuid

import pytest
from paho.mqtt import publish
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from tests.support.ports import accepts
from tests.support.waiting import wait_until

TIMEOUT = 10


def connect(url: str, **kwargs) -> BlockingConnection:
    return BlockingConnection(url, timeout=TIMEOUT, **kwargs)


def round_trip(url: str, **kwargs) -> None:
    """Sends one message to a topic and receives it through a wildcard subscription, on one connection."""
    connection = connect(url, **kwargs)
    try:
        word = uuid.uuid4().hex[:8]
        receiver = connection.create_receiver(f"/topic/{word}.*")
        connection.create_sender(f"/topic/{word}.b").send(Message(body="hello"))
        assert receiver.receive(timeout=TIMEOUT).body == "hello"
        receiver.accept()
    finally:
        connection.close()


def channel_users(node) -> list[str]:
    """The users of the node's open channels (an AMQP 1.0 session runs on one)."""
    result = node.ctl("list_channels", "user", "--silent")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def client_domain(ca_file: str | None) -> SSLDomain:
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    if ca_file is not None:
        domain.set_trusted_ca_db(ca_file)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return domain


def test_a_message_to_a_topic_reaches_a_wildcard_receiver(broker):
    round_trip(broker.url)


def test_the_url_without_credentials_is_the_guest_user(broker):
    connection = connect(broker.url)
    try:
        connection.create_receiver(f"/topic/{uuid.uuid4().hex}")
        assert wait_until(lambda: "guest" in channel_users(broker)), channel_users(broker)
    finally:
        connection.close()


def test_stop_drops_connections_and_refuses_then_start_accepts_again(broker):
    connection = connect(broker.url)
    receiver = connection.create_receiver(f"/topic/{uuid.uuid4().hex}")
    try:
        broker.stop()
        assert not accepts(broker.port)
        assert not accepts(broker.mqtt_port)
        with pytest.raises(ConnectionException):
            receiver.receive(timeout=TIMEOUT)
    finally:
        broker.start()
    assert accepts(broker.mqtt_port)
    round_trip(broker.url)


def test_start_and_stop_are_idempotent(broker):
    broker.start()
    broker.stop()
    broker.stop()
    assert not accepts(broker.port)
    broker.start()
    broker.start()
    round_trip(broker.url)


def test_the_dead_url_is_refused(broker):
    with pytest.raises(ConnectionException, match="Connection refused"):
        connect(broker.dead_url)


def test_the_tls_node_accepts_a_client_that_trusts_the_test_ca(tls_broker):
    assert tls_broker.url.startswith("amqps://localhost:")
    round_trip(tls_broker.url, ssl_domain=client_domain(tls_broker.ca_file))


def test_the_tls_node_is_tls_only(tls_broker):
    with pytest.raises(ConnectionException, match="Unknown protocol"):
        connect(tls_broker.url.replace("amqps:", "amqp:"))


def test_the_tls_node_is_refused_without_the_test_ca(tls_broker):
    with pytest.raises(ConnectionException, match="certificate verify failed"):
        connect(tls_broker.url, ssl_domain=client_domain(None))


def test_an_added_user_connects_with_sasl_plain_and_a_wrong_password_is_refused(broker):
    name, password = f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    broker.add_user(name, password)
    # PLAIN only: given a choice, proton takes the first mechanism RabbitMQ offers, ANONYMOUS.
    connection = connect(broker.url, user=name, password=password, allowed_mechs="PLAIN")
    try:
        connection.create_receiver(f"/topic/{uuid.uuid4().hex}")
        assert wait_until(lambda: name in channel_users(broker)), channel_users(broker)
    finally:
        connection.close()
    with pytest.raises(ConnectionException, match="amqp:unauthorized-access"):
        connect(broker.url, user=name, password="wrong", allowed_mechs="PLAIN")


def test_add_user_keeps_the_password_out_of_its_error(broker):
    name = f"user-{uuid.uuid4().hex[:8]}"
    broker.add_user(name, "first")
    with pytest.raises(RuntimeError, match=f"add_user {name} <password>") as failure:
        broker.add_user(name, "second-secret")
    assert "second-secret" not in str(failure.value)


def test_a_node_without_the_amqp_1_0_plugin_answers_with_a_protocol_error(bare_rabbitmq):
    assert accepts(bare_rabbitmq.port)
    with pytest.raises(ConnectionException, match=r"Unknown protocol \['AMQP\\\\x00\\\\x00\\\\x09\\\\x01'\]"):
        connect(bare_rabbitmq.url)



def test_an_mqtt_publish_reaches_an_amqp_receiver_of_the_same_topic(broker):
    word = uuid.uuid4().hex[:8]
    connection = connect(broker.url)
    try:
        receiver = connection.create_receiver(f"/topic/{word}.#")
        # MQTT's "/" separates topic levels as AMQP's "." does (RabbitMQ maps one onto the other).
        publish.single(f"{word}/instance/status", payload=b'{"ok": true}', qos=1,
                       hostname="127.0.0.1", port=broker.mqtt_port, client_id=f"stratos-{word}")
        message = receiver.receive(timeout=TIMEOUT)
        assert bytes(message.body) == b'{"ok": true}'
    finally:
        connection.close()
