"""The ``redis`` transport: pca's publish/subscribe contract on Redis pub/sub, with redis-py.

Two connections per transport, to the server of ``transport.urls`` that answered last:

- the *publisher* (:mod:`pca_redis._publisher`), used under a lock by whichever thread publishes; a
  publish returns once Redis answered ``PUBLISH`` (which is when it has handed the message to every
  subscriber connected at that moment);
- the *pub/sub connection*, which only the listener thread reads and writes. It reads messages and calls
  the handlers, sends the ``SUBSCRIBE``/``PSUBSCRIBE`` commands for new subscriptions and the
  ``UNSUBSCRIBE``/``PUNSUBSCRIBE`` commands for ended ones, pings the server when it has been silent, and
  on a loss reconnects with the delays of ``transport.backoff()``, trying the URLs in order, and restores
  every subscription before it reports ``RECONNECTED``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from pca_core import (
    AuthenticationError,
    Capability,
    ConfigIssue,
    ConnectionFailed,
    ConnectionState,
    Handler,
    Message,
    QoS,
    Subscription,
    Transport,
    TransportConfig,
    TransportError,
    topic_matches,
    validate_pattern,
    validate_topic,
)
from pca_redis._channels import RedisSubscription, redis_subscription
from pca_redis._options import RedisOptions, config_issues
from pca_redis._publisher import Publisher
from pca_redis._servers import GROUP, PLUGIN, Server, new_connection, open_first, parse_server

_log = logging.getLogger(__name__)

DEFAULT_URL = "redis://localhost:6379"

# redis-py offers no socket to wait on together with a wake-up pipe, and an SSL socket must not be read and
# written by two threads at once. So only the listener touches the pub/sub connection, and between two
# waits of at most this long it takes up new and ended subscriptions and notices close().
_WAKE_INTERVAL = 0.05


@dataclass(eq=False)
class _Session:
    """One pub/sub connection and what it was asked to subscribe to and has confirmed."""

    connection: redis.Connection
    index: int
    sent: set[RedisSubscription] = field(default_factory=set)
    confirmed: set[RedisSubscription] = field(default_factory=set)
    announce: ConnectionState | None = None  # reported once everything sent is confirmed
    ready: bool = False
    refused: bool = False  # the server refused a subscription; readiness does not wait for it


def _client_name(client_id: str | None) -> str | None:
    # CLIENT SETNAME refuses spaces and newlines.
    return re.sub(r"\s", "-", client_id) if client_id else None


class RedisTransport(Transport):
    """Publish/subscribe on Redis, with failover across ``transport.urls``.

    Topics are Redis channel names as they are; a pattern with ``+`` or ``#`` is subscribed as a Redis glob
    and every message is checked against the pattern before delivery, since a glob's ``*`` also spans
    ``/``. Each subscription receives each message once, however many of them match it.

    Redis pub/sub keeps nothing for a subscriber that is not connected: what is published while the
    connection is down is lost for that subscriber (no persistent sessions, no redelivery; messages need
    no acknowledgement). A publish at either QoS waits for the server's answer to ``PUBLISH``.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.TLS,
                              Capability.CONNECTION_STATE})
    Options = RedisOptions

    @classmethod
    def check_config(cls, config: TransportConfig, options: RedisOptions) -> list[ConfigIssue]:
        """Checks the URLs, that the reconnect delays are in order and the keepalive is positive."""
        return config_issues(config, options)

    def __init__(self, config: TransportConfig, options: RedisOptions) -> None:
        super().__init__(config, options)
        self._servers = [parse_server(url, username=config.username, password=config.password,
                                      tls=config.tls is not None) for url in config.urls or (DEFAULT_URL,)]
        self._lock = threading.Condition()  # guards the fields below; never held while calling a handler
        self._routes: dict[RedisSubscription, tuple[Subscription, ...]] = {}
        self._session: _Session | None = None
        self._active = 0  # the server connected to last; the publisher follows it
        self._listener: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Event()
        self._connect_lock = threading.Lock()
        self._backoff = config.backoff()
        self._publisher = Publisher(self._servers, lambda: self._active, self._connection,
                                    publish_timeout=config.publish_timeout,
                                    connect_timeout=config.connect_timeout)

    # -- the contract ---------------------------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> None:
        """Connects to the first server of the URL list that answers, and starts the listener.

        Returns once the subscriptions made so far are confirmed (or ``timeout`` has passed); calling it
        again while connected does nothing.

        Raises:
            ConnectionFailed: no server answered within ``timeout``.
            AuthenticationError: a server refused the credentials and none accepted them.
            TransportError: the transport is closed.
        """
        deadline = time.monotonic() + (self.config.connect_timeout if timeout is None else timeout)
        with self._connect_lock:
            with self._lock:
                if self._closed:
                    raise TransportError(PLUGIN, "redis transport: connect after close", group=GROUP)
                if self._listener is not None:
                    return
            session = self._open(deadline)
            session.announce = ConnectionState.CONNECTED
            with self._lock:
                if self._closed:
                    session.connection.disconnect()
                    raise TransportError(PLUGIN, "redis transport: closed while connecting", group=GROUP)
                self._session, self._active = session, session.index
                self._backoff.connected()
                self._listener = threading.Thread(target=self._listen, args=(session,), daemon=True,
                                                  name=f"pca-redis-listener-{id(self):x}")
                self._listener.start()
                while not session.ready and self._session is session:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._lock.wait(remaining)

    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Publishes to the channel named ``topic`` and returns once Redis answered, at either QoS.

        Raises:
            TypeError: ``payload`` is not bytes.
            ValueError: ``topic`` is empty or has a wildcard.
            PublishTimeout: Redis did not answer within ``timeout`` (default ``publish_timeout``).
            ConnectionFailed: the server is down.
            AuthenticationError: the server refused the credentials.
            TransportError: the transport was never connected, or is closed.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        validate_topic(topic)
        QoS(qos)
        with self._lock:
            if self._closed:
                raise TransportError(PLUGIN, "redis transport: publish after close", group=GROUP)
            if self._listener is None:
                raise TransportError(PLUGIN, "redis transport: publish while not connected", group=GROUP)
        self._publisher.publish(topic, payload, self.config.publish_timeout if timeout is None else timeout)

    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes ``handler`` to the topics matching ``pattern``, now and after every reconnect.

        While connected, returns once Redis confirmed the subscription (within ``publish_timeout``), so a
        message published after this returns reaches the handler. Delivery is at most once whatever
        ``qos`` says: Redis pub/sub keeps nothing for a disconnected subscriber.

        Raises:
            ValueError: ``pattern`` is not a valid pattern.
            TransportError: the transport is closed.
        """
        validate_pattern(pattern)
        subscription = Subscription(pattern, handler, QoS(qos))
        key = redis_subscription(pattern)
        deadline = time.monotonic() + self.config.publish_timeout
        with self._lock:
            if self._closed:
                raise TransportError(PLUGIN, "redis transport: subscribe after close", group=GROUP)
            self._routes[key] = (*self._routes.get(key, ()), subscription)
            session = self._session
            if threading.current_thread() is self._listener:
                return subscription  # called by a handler: the listener sends it after the handler returns
            while session is not None and self._session is session and key not in session.confirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _log.warning("redis transport: subscription to %r not confirmed within %s s; it stays "
                                 "registered", pattern, self.config.publish_timeout)
                    break
                self._lock.wait(remaining)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends ``subscription``: from the moment this returns its handler receives no further message.

        Messages are routed under the same lock, one by one, so only a delivery already under way on the
        listener thread may still reach the handler. A Redis channel or glob that no subscription uses any
        more is unsubscribed by the listener within its wake interval, and is not subscribed again after a
        reconnect. Idempotent.
        """
        key = redis_subscription(subscription.pattern)
        with self._lock:
            remaining = tuple(s for s in self._routes.get(key, ()) if s is not subscription)
            if remaining:
                self._routes[key] = remaining
            else:
                self._routes.pop(key, None)

    def close(self, timeout: float | None = None) -> None:
        """Stops the listener and closes both connections; idempotent, and bounded by ``timeout``."""
        deadline = time.monotonic() + (self.config.connect_timeout if timeout is None else timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener = self._listener
            self._lock.notify_all()
        self._closing.set()
        if listener is not None and listener is not threading.current_thread():
            listener.join(max(deadline - time.monotonic(), 0.0))
            if listener.is_alive():
                _log.warning("redis transport: the listener was still busy when close() timed out")
        self._publisher.close(deadline)
        self._set_state(ConnectionState.CLOSED)

    # -- connecting -----------------------------------------------------------------------------------

    def _connection(self, server: Server, connect_timeout: float, socket_timeout: float) -> redis.Connection:
        return new_connection(server, tls_settings=self.config.tls, connect_timeout=connect_timeout,
                              socket_timeout=socket_timeout, client_name=_client_name(self.config.client_id))

    def _open(self, deadline: float) -> _Session:
        index, connection = open_first(self._servers, deadline, self.config.connect_timeout, self._connection)
        return _Session(connection, index)

    def _reconnect(self) -> _Session | None:
        """Reconnect rounds, each after the next delay of the backoff, until one succeeds; None if closed.

        The first waits as long as the backoff says after a loss: from the first delay again only if the
        lost connection was stable.
        """
        delay = self._backoff.lost()
        while not self._closing.wait(delay):
            try:
                session = self._open(time.monotonic() + self.config.connect_timeout * len(self._servers))
            except AuthenticationError as exc:
                _log.error("%s; retrying", exc)
            except ConnectionFailed as exc:
                _log.info("%s; retrying", exc)
            else:
                session.announce = ConnectionState.RECONNECTED
                with self._lock:
                    if not self._closed:
                        self._session, self._active = session, session.index
                        self._backoff.connected()
                        return session
                session.connection.disconnect()
                return None
            delay = self._backoff.next()
        return None

    def _drop(self, session: _Session) -> None:
        with self._lock:
            if self._session is session:
                self._session = None
            self._lock.notify_all()
        session.connection.disconnect()

    # -- the listener thread --------------------------------------------------------------------------

    def _listen(self, session: _Session) -> None:
        current: _Session | None = session
        while current is not None:
            try:
                self._serve(current)
            except Exception as exc:
                if not isinstance(exc, redis.RedisError | OSError):
                    _log.exception("redis transport: unexpected error in the listener; reconnecting")
                self._drop(current)
                if self._closing.is_set():
                    return
                server = self._servers[current.index]
                lost = ConnectionFailed(PLUGIN, f"redis transport: lost the connection to {server}: {exc}",
                                        group=GROUP)
                lost.__cause__ = exc
                _log.debug("%s", lost)  # the runtime logs LOST for the operator, once
                self._set_state(ConnectionState.LOST, lost)
                current = self._reconnect()
            else:
                self._drop(current)
                return

    def _serve(self, session: _Session) -> None:
        """Reads the pub/sub connection until close(); raises when the connection fails."""
        connection = session.connection
        keepalive = self.options.keepalive
        heard = time.monotonic()
        pinged: float | None = None
        while not self._closing.is_set():
            self._send_changes(session)
            self._announce_if_ready(session)
            if connection.can_read(timeout=_WAKE_INTERVAL):
                try:
                    reply = connection.read_response()
                except redis.ResponseError as exc:
                    _log.error("redis transport: the server refused a subscription: %s", exc)
                    with self._lock:
                        session.refused = True
                    continue
                heard, pinged = time.monotonic(), None
                self._handle(session, reply)
            elif pinged is None and time.monotonic() - heard >= keepalive:
                connection.send_command("PING")
                pinged = time.monotonic()
            elif pinged is not None and time.monotonic() - pinged >= keepalive:
                raise redis.TimeoutError(f"no answer to PING within {keepalive} s")

    def _send_changes(self, session: _Session) -> None:
        """Subscribes what was added since the last call and unsubscribes what no subscription uses."""
        with self._lock:
            missing = [key for key in self._routes if key not in session.sent]
            unused = [key for key in session.sent if key not in self._routes]
            session.sent.update(missing)
            session.sent.difference_update(unused)
            session.confirmed.difference_update(unused)
        for command, undo in (("SUBSCRIBE", "UNSUBSCRIBE"), ("PSUBSCRIBE", "PUNSUBSCRIBE")):
            names = [key.name for key in missing if key.command == command.lower()]
            if names:
                session.connection.send_command(command, *names)
            names = [key.name for key in unused if key.command == command.lower()]
            if names:
                session.connection.send_command(undo, *names)

    def _announce_if_ready(self, session: _Session) -> None:
        with self._lock:
            state = session.announce
            if state is None or not (session.refused or session.sent <= session.confirmed):
                return
            session.announce = None
        if not self._closing.is_set():
            self._set_state(state)
        with self._lock:
            session.ready = True
            self._lock.notify_all()

    def _handle(self, session: _Session, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            return  # PONG outside subscribed mode
        kind = reply[0]
        if kind == b"message":
            self._deliver(RedisSubscription("subscribe", reply[1]), reply[1], reply[2])
        elif kind == b"pmessage":
            self._deliver(RedisSubscription("psubscribe", reply[1]), reply[2], reply[3])
        elif kind in (b"subscribe", b"psubscribe"):
            key = RedisSubscription(kind.decode(), reply[1])
            with self._lock:
                if key in session.sent:  # not the late confirmation of one since unsubscribed
                    session.confirmed.add(key)
                self._lock.notify_all()

    def _deliver(self, key: RedisSubscription, channel: bytes, payload: bytes) -> None:
        """Calls, without holding any lock, each subscription of ``key`` whose pattern matches."""
        with self._lock:
            subscriptions = self._routes.get(key, ())
        topic = channel.decode("utf-8", "replace")
        message = Message(topic, payload)  # nothing to settle: Redis pub/sub has no acknowledgement
        for subscription in subscriptions:
            if key.command == "psubscribe" and not topic_matches(subscription.pattern, topic):
                continue  # the glob's "*" spans levels; the pattern's "+" does not
            try:
                subscription.handler(message)
            except Exception:
                _log.exception("redis transport: handler for %r failed on %s", subscription.pattern, topic)
