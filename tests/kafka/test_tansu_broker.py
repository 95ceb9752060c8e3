"""The test-owned Tansu broker, with raw kafka-python: what the pca-kafka transport relies on."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from tests.support.ports import accepts
from tests.support.tansu import Tansu
from tests.support.waiting import wait_until

GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}
"""Consumer group timings that let the first join finish in about a second (the defaults take ~23 s)."""


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _produce(broker: Tansu, topic: str, *values: bytes, **config) -> None:
    producer = KafkaProducer(**broker.client_config(), **config)
    try:
        for value in values:
            producer.send(topic, value, partition=0).get(10)
    finally:
        producer.close()


def _consumer(broker: Tansu, *topics: str, **config) -> KafkaConsumer:
    config.setdefault("auto_offset_reset", "earliest")
    return KafkaConsumer(*topics, **broker.client_config(), **GROUP, **config)


def _receive(consumer: KafkaConsumer, count: int, timeout: float = 20.0) -> list[bytes]:
    """Polls until ``count`` messages came (or ``timeout`` passed); returns their values."""
    values: list[bytes] = []

    def enough() -> bool:
        for records in consumer.poll(timeout_ms=100).values():
            values.extend(record.value for record in records)
        return len(values) >= count

    wait_until(enough, timeout, interval=0)
    return values


def _goes_round(broker: Tansu, prefix: str, value: bytes) -> list[bytes]:
    """Produces ``value`` to a new topic; returns what a new group's consumer receives from it."""
    topic = _name(prefix)
    _produce(broker, topic, value)
    consumer = _consumer(broker, topic, group_id=_name("g"))
    try:
        return _receive(consumer, 1)
    finally:
        consumer.close()


def _topics(broker: Tansu) -> set[str]:
    admin = KafkaAdminClient(**broker.client_config())
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_message_goes_round(broker: Tansu):
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert _goes_round(broker, "round", b"hello") == [b"hello"]


def test_a_group_resumes_from_its_committed_offset(broker: Tansu):
    topic, group = _name("resume"), _name("g")
    admin = KafkaAdminClient(**broker.client_config())
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    _produce(broker, topic, b"1", b"2", b"3")
    first = _consumer(broker, topic, group_id=group, enable_auto_commit=False, max_poll_records=1)
    try:
        assert _receive(first, 1) == [b"1"]
        first.commit()
    finally:
        first.close()
    second = _consumer(broker, topic, group_id=group, enable_auto_commit=False)
    try:
        assert _receive(second, 2) == [b"2", b"3"]
        assert second.committed(TopicPartition(topic, 0)) == 1
    finally:
        second.close()


def test_topics_are_created_even_when_the_client_asks_not_to(broker: Tansu):
    topic = _name("auto")
    producer = KafkaProducer(**broker.client_config(), allow_auto_create_topics=False, max_block_ms=5000)
    try:
        producer.send(topic, b"x").get(10)
    finally:
        producer.close()
    assert topic in _topics(broker)
    consumer = KafkaConsumer(**broker.client_config())
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}  # 4: order holds per partition only
    finally:
        consumer.close()


def test_stop_and_start_keep_the_address_and_lose_the_topics(broker: Tansu):
    topic = _name("gone")
    _produce(broker, topic, b"x")
    broker.stop()
    assert not accepts(broker.port)
    broker.start()
    assert accepts(broker.port)
    assert topic not in _topics(broker)  # memory storage
    _produce(broker, topic, b"again")
    consumer = _consumer(broker, topic, group_id=_name("g"))
    try:
        assert _receive(consumer, 1) == [b"again"]
    finally:
        consumer.close()


def test_a_message_over_the_producers_limit_is_refused_by_the_producer(broker: Tansu):
    producer = KafkaProducer(**broker.client_config(), max_request_size=10_000)
    try:
        with pytest.raises(MessageSizeTooLargeError, match="larger than the maximum request size"):
            producer.send(_name("big"), b"x" * 20_000)
    finally:
        producer.close()


def test_nothing_answers_at_the_dead_url(broker: Tansu):
    dead = broker.dead_url.removeprefix("kafka://")
    with pytest.raises(KafkaTimeoutError, match=f"Unable to bootstrap from {dead}"):
        KafkaProducer(bootstrap_servers=dead, bootstrap_timeout_ms=500)
    with pytest.raises(KafkaTimeoutError, match=f"Unable to bootstrap from {dead}"):
        KafkaConsumer(bootstrap_servers=dead, bootstrap_timeout_ms=500)


def test_a_message_goes_round_over_tls(tls_broker: Tansu):
    assert tls_broker.url == f"kafka+ssl://localhost:{tls_broker.port}"
    assert _goes_round(tls_broker, "tls", b"secret") == [b"secret"]
    assert tls_broker.proxy is not None and tls_broker.proxy.greeting_errors == []


def test_a_plain_client_cannot_use_the_tls_port(tls_broker: Tansu):
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=tls_broker.bootstrap, bootstrap_timeout_ms=1000)
    assert tls_broker.proxy is not None and tls_broker.proxy.greeting_errors


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_broker: Tansu):
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=tls_broker.bootstrap, security_protocol="SSL",
                      ssl_check_hostname=True, bootstrap_timeout_ms=1000)


@pytest.mark.parametrize("fixture", ["sasl_broker", "sasl_tls_broker"])
def test_a_message_goes_round_with_sasl_plain(fixture: str, request):
    broker: Tansu = request.getfixturevalue(fixture)
    assert _goes_round(broker, "sasl", b"authenticated") == [b"authenticated"]
    assert broker.sasl_proxy is not None and broker.sasl_proxy.attempts
    assert all(accepted for _user, accepted in broker.sasl_proxy.attempts), broker.log()


@pytest.mark.parametrize(("mechanism", "password"), [("PLAIN", "wrong"), ("SCRAM-SHA-256", "s3cret-Pa55")])
def test_the_sasl_broker_refuses_wrong_credentials(sasl_broker: Tansu, mechanism, password):
    # kafka-python retries a refused bootstrap until its timeout; the refusal is in its log only.
    assert sasl_broker.sasl_proxy is not None
    started = len(sasl_broker.sasl_proxy.attempts)  # the fixture's own client authenticated at start
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism=mechanism, sasl_plain_username="agent", sasl_plain_password=password,
                      bootstrap_timeout_ms=1000)
    attempts = sasl_broker.sasl_proxy.attempts[started:]
    if mechanism == "PLAIN":
        assert attempts and set(attempts) == {("agent", False)}
    else:
        assert attempts == []  # the handshake refused the mechanism: no credentials were tried


def test_the_sasl_broker_refuses_a_client_without_sasl(sasl_broker: Tansu):
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=sasl_broker.bootstrap, bootstrap_timeout_ms=1000)
    assert sasl_broker.sasl_proxy is not None and sasl_broker.sasl_proxy.greeting_errors
