"""The ``kafka`` transport: Kafka through kafka-python, one consumer group per agent.

Modules: :mod:`pca_kafka._consumer` (the consumer thread), :mod:`pca_kafka._offsets` (what may be
committed), :mod:`pca_kafka._client` (settings both clients share), :mod:`pca_kafka._errors` (what
failures mean), :mod:`pca_kafka.names` (topics as Kafka names), :mod:`pca_kafka.urls`,
:mod:`pca_kafka._options`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from pca_core.api import (
    Capability,
    ConfigIssue,
    ConnectionFailed,
    ConnectionState,
    Handler,
    PublishTimeout,
    QoS,
    Subscription,
    Transport,
    TransportConfig,
    TransportError,
)
from pca_kafka import _client
from pca_kafka._consumer import ConsumerLoop
from pca_kafka._errors import NAME, connect_error, quiet_kafka_python, transient
from pca_kafka._options import KafkaOptions, config_issues
from pca_kafka.names import Naming
from pca_kafka.urls import parse_urls

_log = logging.getLogger("pca_kafka")

_CLOSE_TIMEOUT = 5.0
_RETRY_DELAY = 0.2  # seconds before a publish that met a transient broker error tries again

quiet_kafka_python()


class KafkaTransport(Transport):
    """Publish/subscribe on Kafka: a producer with ``acks=all``, and a consumer in a group of the agent's own.

    Topics map to Kafka names as :mod:`pca_kafka.names` says (``a/b`` is ``a.b``). Every subscription
    shares one pattern subscription of the consumer. The group is ``options.group_id``, else
    ``transport.client_id`` (the agent sets ``pca-<member id>``), else a random one: every agent has a
    group of its own, so every agent sees every message.

    Offsets: on the group's first start each topic is read from its end; a topic that appears later is
    read from its start; after a restart the group resumes at its committed offsets, which move only past
    messages the core acknowledged (:attr:`Capability.REDELIVERY`). An offset the broker lost resets to
    the earliest one it has.

    Raises:
        ValueError: a bootstrap server address is malformed (``check_config`` reports it first).
        ConfigError: the TLS files cannot be used.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.TLS,
                              Capability.PERSISTENT_SESSION, Capability.REDELIVERY})
    Options = KafkaOptions

    def __init__(self, config: TransportConfig, options: KafkaOptions) -> None:
        super().__init__(config, options)
        self._servers = parse_urls(config.urls, tls=config.tls is not None)
        self._naming = Naming(options.separator, options.prefix)
        self._client_id = config.client_id or f"pca-{uuid.uuid4().hex[:19]}"
        self._group = options.group_id or self._client_id
        self._common = _client.common(config, options, self._servers, self._client_id)
        self._producer: KafkaProducer | None = None
        self._loop: ConsumerLoop | None = None
        self._pending: list[tuple[Subscription, str]] = []  # subscribed before connect
        self._lock = threading.Lock()
        self._closed = False
        if config.tls is not None and not config.tls.verify and self._servers[0].tls:
            _log.warning("kafka: transport.tls.verify is false: broker certificates and host names are NOT "
                         "checked")

    @classmethod
    def check_config(cls, config: TransportConfig, options: KafkaOptions) -> list[ConfigIssue]:
        """Checks the bootstrap servers, the options' ranges, the TLS files and the credentials."""
        return config_issues(config, options)

    def connect(self, timeout: float | None = None) -> None:
        """Bootstraps the producer and the consumer from ``transport.urls`` (any server that answers).

        Waits, within ``timeout``, for the consumer's first assignment when there are subscriptions, so
        that what is published after ``connect`` returns reaches them. kafka-python reconnects and fails
        over by itself from then on.

        Raises:
            ConnectionFailed: no server answered within ``timeout`` (``transport.connect_timeout``).
            AuthenticationError: the broker refused the credentials.
            TransportError: the transport is closed.
        """
        with self._lock:
            if self._closed:
                raise TransportError(NAME, "kafka: connect() after close()")
            if self._producer is not None:
                return
            wait = self.config.connect_timeout if timeout is None else timeout
            started = time.monotonic()
            deadline = started + wait
            bootstrap = {**self._common, "bootstrap_timeout_ms": max(int(wait * 1000), 1)}
            servers = ", ".join(map(str, self._servers))
            try:
                consumer = KafkaConsumer(**bootstrap, group_id=self._group, enable_auto_commit=False,
                                         auto_offset_reset="earliest",
                                         fetch_max_bytes=self.config.max_message_size,
                                         max_partition_fetch_bytes=self.config.max_message_size)
            except KafkaError as exc:
                raise connect_error(exc, servers, self.config.username, started) from None
            # The consumer's thread reads the topic list and assigns itself while the producer bootstraps.
            loop = ConsumerLoop(consumer, self._naming, self.options.max_in_flight,
                                self.options.metadata_max_age)
            pending, self._pending = self._pending, []
            for subscription, regex in pending:
                loop.subscribe(subscription, regex)
            loop.start()
            try:
                left = max(deadline - time.monotonic(), 0.001)
                # Not idempotent: a restarted broker that lost its producer ids (Tansu's memory storage)
                # would refuse the producer for good; at-least-once allows the rare duplicate anyway.
                producer = KafkaProducer(**{**bootstrap, "bootstrap_timeout_ms": max(int(left * 1000), 1)},
                                         acks="all", enable_idempotence=False,
                                         max_request_size=self.options.max_request_size,
                                         max_block_ms=int(self.config.publish_timeout * 1000))
            except KafkaError as exc:
                loop.close(max(deadline - time.monotonic(), 0.0))
                self._pending = pending
                raise connect_error(exc, servers, self.config.username, started) from None
            self._producer, self._loop = producer, loop
        _log.info("kafka: connected to %s as %r (group %r)", servers, self._client_id, self._group)
        if pending and not self._loop.assigned.wait(max(deadline - time.monotonic(), 0.0)):
            _log.warning("kafka: the consumer has no partitions assigned yet; messages published before it "
                         "has are not received")
        self._set_state(ConnectionState.CONNECTED)

    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Publishes one message; at QoS 1 returns once every in-sync replica has it (``acks=all``).

        Raises:
            TypeError: ``payload`` is not bytes.
            ValueError: ``topic`` cannot be a Kafka topic name.
            ConnectionFailed: not connected (never connected, or closed).
            PublishTimeout: no acknowledgement within ``timeout`` (default ``transport.publish_timeout``),
                which includes waiting for the topic's metadata (an unreachable cluster, or a topic that
                does not exist on a broker that does not create topics).
            TransportError: the broker or the producer refused the message (too large, say).
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        name = self._naming.name(topic)
        producer = self._producer
        if producer is None or self._closed:
            raise ConnectionFailed(NAME, f"kafka: not connected ({self.state.value}); {topic} not published")
        wait = self.config.publish_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            try:
                self._send(producer, name, payload, confirm=min(int(qos), self.config.qos) == 1,
                           deadline=deadline)
                return
            except KafkaTimeoutError:
                raise PublishTimeout(NAME, f"kafka: {name} was not acknowledged within {wait} s (the cluster "
                                           f"is unreachable, or the topic does not exist and the broker does "
                                           f"not create topics: create it)") from None
            except MessageSizeTooLargeError:
                raise TransportError(NAME, f"kafka: a message of {len(payload)} bytes to {name} is over the "
                                           f"size limit (options.max_request_size = "
                                           f"{self.options.max_request_size}, and the broker's "
                                           f"message.max.bytes)") from None
            except KafkaError as exc:
                # A broker that has just restarted may answer a produce with an unknown error (Tansu does).
                if deadline - time.monotonic() < _RETRY_DELAY or not transient(exc):
                    raise TransportError(NAME, f"kafka: publishing to {name} failed: {exc}") from None
                time.sleep(_RETRY_DELAY)

    @staticmethod
    def _send(producer: KafkaProducer, name: str, payload: bytes, *, confirm: bool, deadline: float) -> None:
        left = max(deadline - time.monotonic(), 0.001)
        # send() waits up to the producer's max_block_ms for the topic's metadata; this wait honours the
        # call's own timeout instead (kafka-python has no public way to bound it per call).
        producer._wait_on_metadata(name, int(left * 1000))
        future = producer.send(name, payload)
        if confirm:
            future.get(timeout=max(deadline - time.monotonic(), 0.001))

    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes ``handler`` to ``pattern``: the consumer assigns itself the topics it matches.

        When connected it returns once the consumer has (within ``transport.connect_timeout``), so that
        what is published afterwards reaches the handler.

        Raises:
            ValueError: ``pattern`` is not a valid pattern, or cannot match Kafka topic names.
            TransportError: the transport is closed.
        """
        regex = self._naming.regex(pattern)
        subscription = Subscription(pattern, handler, QoS(min(int(qos), self.config.qos)))
        with self._lock:
            if self._closed:
                raise TransportError(NAME, "kafka: subscribe() after close()")
            if self._loop is None:
                self._pending.append((subscription, regex))
                return subscription
        applied = self._loop.subscribe(subscription, regex)
        if not self._loop.on_thread() and not applied.wait(self.config.connect_timeout):
            _log.warning("kafka: the consumer has not assigned itself the topics of %r within %s s; messages "
                         "published until it has may be missed", pattern, self.config.connect_timeout)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends ``subscription``: from the moment this returns its handler receives no further message."""
        with self._lock:
            self._pending = [(s, r) for s, r in self._pending if s is not subscription]
            loop = self._loop
        if loop is not None:
            loop.unsubscribe(subscription)

    def close(self, timeout: float | None = None) -> None:
        """Commits what was acknowledged, closes both clients; idempotent, within ``timeout`` (5 s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, producer = self._loop, self._producer
        deadline = time.monotonic() + (_CLOSE_TIMEOUT if timeout is None else timeout)
        if loop is not None and not loop.close(max(deadline - time.monotonic(), 0.0) / 2):
            _log.debug("kafka: the consumer is still closing")
        if producer is not None:
            try:
                producer.close(timeout=max(deadline - time.monotonic(), 0.0))
            except Exception as exc:
                _log.debug("kafka: closing the producer: %s", exc)
        self._set_state(ConnectionState.CLOSED)
