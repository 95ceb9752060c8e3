"""The ``amqp`` transport: AMQP 1.0 through one python-qpid-proton Container on one network thread.

proton's reconnect logic is not used: it cannot report each attempt's failure, share ``connect()``'s
timeout among the URLs, or restore links with the core's backoff. The transport disables it and does the
connecting itself on the container thread, a new proton Connection per attempt.

Modules: :mod:`pca_amqp._engine` (the container thread: connecting), :mod:`pca_amqp._receivers` and
:mod:`pca_amqp._senders` (the links),
:mod:`pca_amqp._calls` (calls from other threads), :mod:`pca_amqp._jobs` (what callers wait on),
:mod:`pca_amqp._errors` (what a failed connection means), :mod:`pca_amqp.addresses` (topics as AMQP
addresses), :mod:`pca_amqp.urls`, :mod:`pca_amqp._options`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Final

from pca_amqp._engine import Engine
from pca_amqp._jobs import ConnectRequest, Publish
from pca_amqp._options import AmqpOptions, config_issues
from pca_amqp._receivers import Receiving
from pca_amqp.addresses import Addressing
from pca_amqp.urls import parse_urls
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

_log = logging.getLogger("pca_amqp")

NAME: Final = "amqp"
_CLOSE_TIMEOUT = 5.0
_MARGIN = 0.5  # seconds a caller waits beyond the network thread's own deadline before giving up on it

if logging.getLogger("proton").level == logging.NOTSET:
    # proton logs each connection attempt, and each failure again as an error; the transport reports both
    # itself, once, with what to do. Configure the "proton" logger to see its lines.
    logging.getLogger("proton").setLevel(logging.CRITICAL)


class AmqpTransport(Transport):
    """Publish/subscribe over AMQP 1.0 (RabbitMQ's ``rabbitmq_amqp1_0``) with failover across ``urls``.

    Topics map to addresses as :mod:`pca_amqp.addresses` says (``a/b`` is ``/topic/a.b``). Each
    subscription is a receiver link of its own; each topic published to, a sender link, opened on first
    use. Container id: ``transport.client_id`` when set, else a random ``pca-<hex>``. Credentials:
    ``transport.username``/``password`` (SASL PLAIN), or ``user:password@`` in a URL, which wins for that
    URL; without a user the connection uses SASL ANONYMOUS. TLS: ``amqps://`` URLs, with the host name
    verified unless ``transport.tls.verify`` is false.

    Acknowledgement: a received message is settled (accepted) once the core acknowledged it, and only
    then does the broker get credit for another; at most ``options.prefetch`` are unsettled per
    subscription. RabbitMQ's topic subscriptions are queues of the link's own, deleted when the link
    ends, so what was unsettled then is gone: the transport declares no redelivery.

    Raises:
        ValueError: a broker URL is malformed (``check_config`` reports it first).
        ConfigError: proton cannot use the TLS files.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.TLS,
                              Capability.CONNECTION_STATE})
    Options = AmqpOptions

    def __init__(self, config: TransportConfig, options: AmqpOptions) -> None:
        super().__init__(config, options)
        urls = parse_urls(config.urls, tls=config.tls is not None)
        self._addressing = Addressing(options.address_prefix)
        container_id = config.client_id or f"pca-{uuid.uuid4().hex[:19]}"
        self._engine = Engine(config, options, urls, self._addressing, container_id, self._set_state)
        self._closed = False
        if config.tls is not None and not config.tls.verify and any(url.tls for url in urls):
            _log.warning("amqp: transport.tls.verify is false: broker certificates and host names are NOT "
                         "checked")

    @classmethod
    def check_config(cls, config: TransportConfig, options: AmqpOptions) -> list[ConfigIssue]:
        """Checks the broker URLs, the options' ranges and the TLS files."""
        return config_issues(config, options)

    def connect(self, timeout: float | None = None) -> None:
        """Connects to the first broker of ``transport.urls`` that accepts, in order.

        Each attempt may take ``transport.connect_timeout`` seconds, and all of them together ``timeout``,
        shared evenly among the URLs not tried yet. A connection counts once its receivers are attached.
        From then on the network thread keeps it: it reconnects and fails over by itself. On failure
        nothing keeps trying; call ``connect`` again.

        Raises:
            ConnectionFailed: no broker accepted within ``timeout``; the message names each URL tried
                (passwords masked) and why it failed, with what to do about it.
            AuthenticationError: no broker accepted, and one refused the credentials.
            TransportError: the transport is closed, or ``connect`` was called from a handler.
        """
        engine = self._engine
        if self._closed:
            raise TransportError(NAME, "amqp: connect() after close()")
        if engine.on_network_thread():
            raise TransportError(NAME, "amqp: connect() from a handler on the network thread")
        request = ConnectRequest(None if timeout is None else time.monotonic() + timeout)
        engine.start()
        engine.calls.post(lambda: engine.begin(request))
        if not request.done.wait(None if timeout is None else timeout + _MARGIN):
            request.cancelled = True
            raise ConnectionFailed(NAME, f"amqp: no broker accepted a connection within {timeout} s "
                                         f"(tried: {'; '.join(request.tried) or 'none'})")
        if request.error is not None:
            raise request.error

    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Publishes one message; at QoS 1 returns once the broker accepted it (its disposition).

        ``transport.qos`` caps the QoS: with 0 every message is sent pre-settled, and this returns once it
        was handed to the network thread. While the connection is down this raises at once instead of
        queueing (the core keeps its own outbox).

        Raises:
            TypeError: ``payload`` is not bytes.
            ValueError: ``topic`` is not publishable, or cannot be a routing key (a ``.`` in a level).
            ConnectionFailed: not connected, or the connection was lost before the broker answered.
            PublishTimeout: no disposition within ``timeout`` (default ``transport.publish_timeout``).
            TransportError: the broker rejected or released the message, or refused the address; or a
                QoS 1 publish was made from a handler on the network thread, which would wait for itself.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        address, key = self._addressing.address(topic)
        engine = self._engine
        if self._closed or not engine.up:
            raise ConnectionFailed(NAME, f"amqp: not connected ({self.state.value}); {topic} not published")
        job = Publish(address, key, payload, confirm=min(int(qos), self.config.qos) == 1)
        if engine.on_network_thread():
            if job.confirm:
                raise TransportError(NAME, "amqp: a QoS 1 publish from a handler on the network thread would "
                                           "wait for itself; publish at QoS 0, or from another thread")
            engine.publish(job)
        else:
            engine.calls.post(lambda: engine.publish(job))
            if not job.confirm:
                return
            wait = self.config.publish_timeout if timeout is None else timeout
            if not job.done.wait(wait):
                job.finish(PublishTimeout(NAME, f"amqp: the broker did not accept {topic} within {wait} s"))
        if job.error is not None:
            raise job.error

    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes ``handler`` to ``pattern``, now and after every reconnect: a receiver link each time.

        When connected it waits for the broker's attach, at most ``transport.connect_timeout`` seconds.

        Raises:
            ValueError: ``pattern`` is not a valid pattern, or has a ``.`` or ``*`` in a level.
            TransportError: the transport is closed, or the broker refused the subscription.
        """
        source = self._addressing.source(pattern)
        if self._closed:
            raise TransportError(NAME, "amqp: subscribe() after close()")
        subscription = Subscription(pattern, handler, QoS(min(int(qos), self.config.qos)))
        engine = self._engine
        receiving = Receiving(subscription, source)
        engine.receivers.active.add(subscription)
        engine.calls.post(lambda: engine.attach(receiving))
        if engine.up and not engine.on_network_thread():
            if not receiving.attached.wait(self.config.connect_timeout):
                _log.warning("amqp: the broker has not attached %r within %s s; it is attached on the next "
                             "connect", pattern, self.config.connect_timeout)
            elif receiving.refusal is not None:
                self.unsubscribe(subscription)
                raise TransportError(NAME, f"amqp: the broker refused the subscription to {pattern!r} "
                                           f"({source}): {receiving.refusal}")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends ``subscription``: from the moment this returns its handler receives no further message.

        Its receiver link is closed, and with it the broker's queue for it. Messages already on their way
        are dropped on arrival, and settled. Idempotent.
        """
        engine = self._engine
        if subscription in engine.receivers.active:
            engine.receivers.active.discard(subscription)
            engine.calls.post(lambda: engine.detach(subscription))

    def close(self, timeout: float | None = None) -> None:
        """Closes the connection and stops the network thread; idempotent.

        Acknowledgements made before the call are settled first. Returns within ``timeout`` seconds (5 by
        default), closing the socket without the broker's answer when it does not come in time.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + (_CLOSE_TIMEOUT if timeout is None else timeout)
        engine = self._engine
        thread = engine.thread
        if thread is None:
            engine.calls.release()
        else:
            grace = max(deadline - time.monotonic() - _MARGIN, 0.0)
            engine.calls.post(lambda: engine.shutdown(grace))
            if not engine.on_network_thread():
                thread.join(max(deadline - time.monotonic(), 0.0))
                if thread.is_alive():
                    _log.debug("amqp: the network thread is still closing")
                else:
                    engine.calls.release()
        self._set_state(ConnectionState.CLOSED)
