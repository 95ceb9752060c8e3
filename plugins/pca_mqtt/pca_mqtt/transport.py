"""The ``mqtt`` transport: MQTT 3.1.1 or 5 through one paho-mqtt client and one network thread.

The transport owns its network thread rather than using paho's ``loop_start()``: paho's own reconnect
loop only knows one host, grows its delay by doubling, sleeps in one-second steps and cannot be joined with
a timeout, while pca needs failover across a URL list with the core's backoff, a ``connect`` that honours
its timeout, and a ``close`` that is bounded even when the broker is gone. The thread drives the same
client for its whole life and does all of the connecting, so there is one client and one thread whatever
happens to the brokers.

Modules: :mod:`pca_mqtt._link` (the network thread: connecting, reconnecting, failover),
:mod:`pca_mqtt._pump` (one network step, wake-ups), :mod:`pca_mqtt._acks` (PUBACKs after handling, in
order), :mod:`pca_mqtt._subscriptions` (SUBSCRIBE and UNSUBSCRIBE), :mod:`pca_mqtt._routing` (handing
messages to handlers), :mod:`pca_mqtt._client` (the paho client), :mod:`pca_mqtt._options`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

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
    validate_pattern,
    validate_topic,
)
from pca_mqtt._link import Link
from pca_mqtt._options import MqttOptions, config_issues
from pca_mqtt._routing import Router

_log = logging.getLogger("pca_mqtt")

NAME: Final = "mqtt"


class MqttTransport(Transport):
    """Publish/subscribe over MQTT with failover across ``transport.urls``.

    Client id: ``transport.client_id`` when set (it must be stable for ``persistent_session``), else a
    random ``pca-<hex>`` per transport. Credentials: ``transport.username``/``password``, or a
    ``user:password@`` in a URL, which wins for that URL. TLS: ``mqtts://`` URLs, or ``[transport.tls]``
    with legacy ``host:port`` URLs.

    Acknowledgement: with ``persistent_session`` a QoS 1 message is acknowledged to the broker (PUBACK)
    once every handler it reached acknowledged it (:meth:`Message.ack`), in the order messages arrived, so
    a message received but not handled is delivered again on the session's next connection
    (:attr:`Capability.REDELIVERY`). With a clean session paho acknowledges on receipt: the broker drops
    whatever is unacknowledged when the connection ends anyway.

    Raises:
        ConfigError: the TLS files cannot be used.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.TLS,
                              Capability.PERSISTENT_SESSION, Capability.CONNECTION_STATE,
                              Capability.REDELIVERY})
    Options = MqttOptions

    def __init__(self, config: TransportConfig, options: MqttOptions) -> None:
        super().__init__(config, options)
        client_id = config.client_id or f"pca-{uuid.uuid4().hex[:19]}"
        self._link = Link(config, options, client_id, Router(), self._set_state)

    @classmethod
    def check_config(cls, config: TransportConfig, options: MqttOptions) -> list[ConfigIssue]:
        """Checks the broker URLs, the reconnect delays, the TLS files and the option ranges."""
        return config_issues(config, options)

    def connect(self, timeout: float | None = None) -> None:
        """Connects to the first broker of ``transport.urls`` that accepts, in order.

        Each attempt may take ``transport.connect_timeout`` seconds, and all of them together ``timeout``,
        which is shared evenly among the URLs not tried yet.
        On success the network thread keeps the connection from then on: it reconnects and fails over by
        itself. On failure nothing keeps trying; call ``connect`` again.

        Raises:
            ConnectionFailed: no broker accepted within ``timeout``; the message names each URL tried
                (passwords masked) and why it failed.
            AuthenticationError: no broker accepted, and one refused the credentials.
            TransportError: the transport is closed.
        """
        self._link.connect(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Publishes one message; at QoS 1 returns once the broker sent PUBACK.

        ``transport.qos`` caps the QoS: with 0 every publish is QoS 0. While the connection is down this
        raises at once instead of queueing (the core keeps its own outbox); a message whose PUBACK did not
        come in time may still reach the broker after a reconnect, as QoS 1 allows.

        Raises:
            TypeError: ``payload`` is not bytes.
            ValueError: ``topic`` is not a publishable topic.
            ConnectionFailed: not connected (never connected, reconnecting, or closed).
            PublishTimeout: no PUBACK within ``timeout`` (default ``transport.publish_timeout``).
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        validate_topic(topic)
        link = self._link
        if not link.up:
            raise ConnectionFailed(NAME, f"mqtt: not connected ({self.state.value}); {topic} not published")
        effective = min(int(qos), self.config.qos)
        info = link.client.publish(topic, payload, qos=effective)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise ConnectionFailed(NAME, f"mqtt: connection lost; {topic} not published")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(NAME, f"mqtt: publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if effective == 0:
            return
        wait = self.config.publish_timeout if timeout is None else timeout
        try:
            if link.on_network_thread():
                published = link.pump.await_publish(info, wait, lambda: link.closing)
            else:
                info.wait_for_publish(wait)
                published = info.is_published()
        except (RuntimeError, ValueError) as exc:  # paho raises these when the message was not queued
            raise TransportError(NAME, f"mqtt: publish to {topic} failed: {exc}") from None
        if not published:
            raise PublishTimeout(NAME, f"mqtt: the broker did not acknowledge {topic} within {wait} s")

    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes ``handler`` to ``pattern`` now (waiting for SUBACK if connected) and on every connect.

        A message that matches several subscriptions reaches each of their handlers once: the transport
        routes every received message to all matching subscriptions itself.

        Raises:
            ValueError: ``pattern`` is not a valid pattern.
            TransportError: the transport is closed, or the broker refused the subscription.
        """
        validate_pattern(pattern)
        subscription = Subscription(pattern, handler, QoS(min(int(qos), self.config.qos)))
        link = self._link
        if link.closing:
            raise TransportError(NAME, "mqtt: subscribe() after close()")
        ack = link.subscriptions.add(subscription)
        if ack is not None and not link.on_network_thread():
            if not ack.event.wait(self.config.connect_timeout):
                _log.warning("mqtt: no SUBACK for %r within %s s; it is restored on the next connect",
                             pattern, self.config.connect_timeout)
            elif ack.refused:
                raise TransportError(NAME, f"mqtt: the broker refused the subscription to {pattern!r}: "
                                           f"{ack.refused[0]}")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends ``subscription``: from the moment this returns its handler receives no further message.

        When no other subscription uses its pattern, the broker is sent UNSUBSCRIBE (at once when
        connected, else after the next connect if the broker kept the session), and later reconnects do
        not subscribe to it again. Messages of the pattern that are already on their way are dropped on
        arrival, and acknowledged. Idempotent.
        """
        self._link.subscriptions.remove(subscription)

    def close(self, timeout: float | None = None) -> None:
        """Acknowledges what was handled, disconnects and stops the network thread; idempotent.

        Returns within ``timeout`` seconds (5 by default). If the thread is in the middle of a connection
        attempt to an unresponsive host, it is left to finish it (at most ``transport.connect_timeout``
        seconds) and end on its own.
        """
        if self._link.close(timeout):
            self._set_state(ConnectionState.CLOSED)
