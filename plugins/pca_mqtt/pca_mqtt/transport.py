"""The ``mqtt`` transport: MQTT 3.1.1 or 5 through one paho-mqtt client and one network thread.

The transport owns its network thread rather than using paho's ``loop_start()``: paho's own reconnect
loop only knows one host, grows its delay by doubling, sleeps in one-second steps and cannot be joined with
a timeout, while pca needs failover across a URL list on a fixed schedule with jitter, a ``connect`` that
honours its timeout, and a ``close`` that is bounded even when the broker is gone. The thread drives the
same client with ``Client.loop()`` for its whole life and does all of the connecting, so there is one
client and one thread whatever happens to the brokers.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pca_core.api import (
    AuthenticationError,
    Capability,
    ConfigError,
    ConfigIssue,
    ConnectionFailed,
    ConnectionState,
    Handler,
    Message,
    PcaError,
    PluginOptions,
    PublishTimeout,
    QoS,
    Subscription,
    Transport,
    TransportConfig,
    TransportError,
    topic_matches,
    validate_pattern,
    validate_topic,
)
from pca_mqtt.urls import BrokerUrl, parse_urls

_log = logging.getLogger(__name__)

NAME: Final = "mqtt"
RECONNECT_DELAYS: Final = (2.0, 2.0, 5.0, 5.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0, 50.0, 50.0,
                           60.0)
"""The original agent's schedule, in seconds, between two passes over the URL list; the last one repeats."""

STABLE_AFTER: Final = 30.0
"""Seconds a connection must last before its loss restarts the reconnect schedule from the beginning.

A broker that accepts and then drops the agent at once (a client id taken over by another agent, say)
would otherwise be hammered at the first delay for ever.
"""

_LOOP_TIMEOUT = 1.0  # seconds one select() may wait; close() and publish() wake it earlier
_STEP = 0.1  # seconds of one loop while waiting for CONNACK/SUBACK (bounds how late a cancel is seen)
_CLOSE_TIMEOUT = 5.0
_AUTH_REFUSALS = frozenset({"Bad user name or password", "Not authorized", "Bad authentication method"})
_ROUTE_CACHE_SIZE = 1024
_BATCH = 256  # messages read before they are handed to the handlers (see _pump)


class MqttOptions(PluginOptions):
    """Options of the ``mqtt`` transport (``[transport.options]``).

    Attributes:
        keepalive: seconds of silence after which the client pings the broker; a broker that does not
            answer within as long again is considered lost.
        reconnect_delays: seconds to wait before each new pass over the URL list after a connection was
            lost or a pass failed; the last value repeats. A connection that lasted at least 30 s starts
            the schedule again.
        jitter: each delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``, so that a
            fleet of agents does not reconnect in step.
        persistent_session: keep the broker session across disconnects (MQTT clean session off), so QoS 1
            messages published while the agent is away are delivered when it comes back. Needs a stable
            ``transport.client_id``.
        session_expiry: with MQTT 5 and a persistent session, seconds the broker keeps the session after a
            disconnect (MQTT 3.1.1 brokers decide this themselves).
        protocol: ``"3.1.1"`` or ``"5"``.
    """

    keepalive: int = 60
    reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS
    jitter: float = 0.2
    persistent_session: bool = False
    session_expiry: int = 86_400
    protocol: Literal["3.1.1", "5"] = "3.1.1"


@dataclass
class _ConnectRequest:
    """A ``connect()`` call waiting for the network thread's pass over the URL list."""

    deadline: float | None
    tried: list[str] = field(default_factory=list)
    current: BrokerUrl | None = None
    done: bool = False
    error: PcaError | None = None
    cancelled: bool = False

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass
class _SubAck:
    event: threading.Event = field(default_factory=threading.Event)
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Routes:
    """The subscriptions and, per topic seen, the handlers it reaches; replaced whole on every subscribe."""

    subscriptions: tuple[Subscription, ...] = ()
    cache: dict[str, tuple[Handler, ...]] = field(default_factory=dict)


def _ignore_write_registration(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Keeps paho from writing on the caller's thread: the network thread's select() sees pending writes."""


class MqttTransport(Transport):
    """Publish/subscribe over MQTT with failover across ``transport.urls``.

    Client id: ``transport.client_id`` when set (it must be stable for ``persistent_session``), else a
    random ``pca-<hex>`` per transport. Credentials: ``transport.username``/``password``, or a
    ``user:password@`` in a URL, which wins for that URL. TLS: ``mqtts://`` URLs, or ``[transport.tls]``
    with legacy ``host:port`` URLs.

    Raises:
        ConfigError: the URLs or the TLS, QoS or session settings are unusable.
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.TLS,
                              Capability.PERSISTENT_SESSION, Capability.CONNECTION_STATE})
    Options = MqttOptions

    def __init__(self, config: TransportConfig, options: MqttOptions) -> None:
        super().__init__(config, options)
        self._urls = parse_urls(config.urls, tls=config.tls is not None)
        self._client_id = config.client_id or f"pca-{uuid.uuid4().hex[:19]}"
        self._v5 = options.protocol == "5"
        self._client = self._make_client()
        self._random = random.Random()

        self._cond = threading.Condition()  # guards the fields below; never held while calling out
        self._thread: threading.Thread | None = None
        self._want = False  # the thread should be connected (a connect() asked, or it once succeeded)
        self._request: _ConnectRequest | None = None
        self._closing = False
        self._disconnect_sent = False
        self._close_deadline = 0.0
        self._up = False  # CONNACK accepted and the socket alive: publish and subscribe go straight out
        self._ready = False  # _up, and the subscriptions restored
        self._ever_connected = False

        self._routes = _Routes()
        self._acks_lock = threading.Lock()
        self._subacks: dict[int, _SubAck] = {}
        # Written by paho's callbacks, on the network thread, and read there too.
        self._inbox: list[Message] = []
        self._connack: ReasonCode | None = None
        self._disconnect_reason: str = ""
        self._delay_index = 0
        self._auth_logged = False

    @classmethod
    def check_config(cls, config: TransportConfig, options: MqttOptions) -> list[ConfigIssue]:
        """Checks the broker URLs, the TLS files and the option ranges that types alone do not."""
        issues = []
        try:
            parse_urls(config.urls, tls=config.tls is not None)
        except ValueError as exc:
            issues.append(ConfigIssue("urls", str(exc)))
        if options.persistent_session and not config.client_id:
            issues.append(ConfigIssue("options.persistent_session",
                                      "a persistent session needs a stable client_id (the agent sets "
                                      "pca-<MEMBER_ID> when the payload has one)"))
        if not 0 < options.keepalive <= 65535:
            issues.append(ConfigIssue("options.keepalive", f"1 to 65535 seconds, not {options.keepalive}"))
        if not options.reconnect_delays or min(options.reconnect_delays) < 0:
            issues.append(ConfigIssue("options.reconnect_delays",
                                      "a non-empty list of seconds, none negative"))
        if not 0 <= options.jitter <= 1:
            issues.append(ConfigIssue("options.jitter", f"a fraction from 0 to 1, not {options.jitter}"))
        if not 0 <= options.session_expiry <= 0xFFFFFFFF:
            issues.append(ConfigIssue("options.session_expiry",
                                      f"0 to 4294967295 seconds, not {options.session_expiry}"))
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(config.tls, key, None) if config.tls is not None else None
            if path is not None and not os.access(path, os.R_OK):
                issues.append(ConfigIssue(f"tls.{key}", f"a readable file; {path} cannot be read"))
        return issues

    # -- the contract -----------------------------------------------------------------------------------

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
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            # Wait while the thread is busy: reconnecting on its own, or ending an abandoned pass.
            busy = self._cond.wait_for(lambda: self._closing or self._ready or not self._want,
                                       _left(deadline))
            if self._closing:
                raise TransportError(NAME, "mqtt: connect() after close()")
            if self._ready:
                return
            if not busy:
                raise ConnectionFailed(NAME, f"mqtt: not connected within {timeout} s (still trying "
                                             f"{', '.join(map(str, self._urls))})")
            request = _ConnectRequest(deadline)
            self._request = request
            self._want = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="pca-mqtt", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            finished = self._cond.wait_for(lambda: request.done or self._closing, _left(deadline))
            if not finished:
                request.cancelled = True  # the thread gives up after the attempt in progress
                tried = [*request.tried, *([f"{request.current} (no answer yet)"] if request.current else [])]
                raise ConnectionFailed(NAME, f"mqtt: no broker accepted a connection within {timeout} s "
                                             f"(tried: {'; '.join(tried) or 'none'})")
            if not request.done:
                raise TransportError(NAME, "mqtt: closed while connecting")
        if request.error is not None:
            raise request.error

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
        if not self._up:
            raise ConnectionFailed(NAME, f"mqtt: not connected ({self.state.value}); {topic} not published")
        effective = min(int(qos), self.config.qos)
        info = self._client.publish(topic, payload, qos=effective)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise ConnectionFailed(NAME, f"mqtt: connection lost; {topic} not published")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(NAME, f"mqtt: publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if effective == 0:
            return
        wait = self.config.publish_timeout if timeout is None else timeout
        try:
            if threading.current_thread() is self._thread:
                published = self._await_on_network_thread(info, wait)
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
        with self._cond:
            if self._closing:
                raise TransportError(NAME, "mqtt: subscribe() after close()")
            routes = self._routes
            self._routes = _Routes((*routes.subscriptions, subscription))
            up = self._up
        if up:
            ack = self._send_subscribe([subscription])
            if ack is not None and threading.current_thread() is not self._thread:
                if not ack.event.wait(self.config.connect_timeout):
                    _log.warning("mqtt: no SUBACK for %r within %s s; it is restored on the next connect",
                                 pattern, self.config.connect_timeout)
                elif ack.refused:
                    raise TransportError(NAME, f"mqtt: the broker refused the subscription to {pattern!r}: "
                                               f"{ack.refused[0]}")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stops routing to ``subscription`` at once.

        The broker is unsubscribed from a pattern no other subscription uses; until it has done so, its
        messages are dropped on arrival.
        """
        with self._cond:
            routes = self._routes
            if not any(s is subscription for s in routes.subscriptions):
                return
            remaining = tuple(s for s in routes.subscriptions if s is not subscription)
            self._routes = _Routes(remaining)
            last = not any(s.pattern == subscription.pattern for s in remaining)
            up = self._up
        if last and up:
            self._client.unsubscribe(subscription.pattern)

    def close(self, timeout: float | None = None) -> None:
        """Disconnects and stops the network thread; idempotent, and returns within ``timeout`` seconds.

        If the thread is in the middle of a connection attempt to an unresponsive host, it is left to
        finish it (at most ``transport.connect_timeout`` seconds) and end on its own.
        """
        timeout = _CLOSE_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = deadline
            thread = self._thread
            disconnect = self._up
            self._disconnect_sent = disconnect
            self._up = self._ready = False
            self._cond.notify_all()
        if disconnect:
            self._client.disconnect()  # queued for the network thread, which it wakes
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                _log.debug("mqtt: the network thread is still finishing a connection attempt")
        self._set_state(ConnectionState.CLOSED)

    # -- the network thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closing or self._want)
                    if self._closing:
                        return
                    request = self._request
                try:
                    url = self._connect_pass(request)
                    if url is not None:
                        self._serve(url)
                except Exception as exc:  # a bug here must not silently end the agent's connection
                    _log.exception("mqtt: unexpected error in the network thread; reconnecting")
                    self._recover(request, exc)
        finally:
            self._shutdown()

    def _recover(self, request: _ConnectRequest | None, exc: Exception) -> None:
        error = TransportError(NAME, f"mqtt: unexpected error: {exc!r}")
        with self._cond:
            was_up = self._up
            self._up = self._ready = False
            if request is not None and not request.done:
                self._finish(request, error)
                self._request = None
                self._want = self._ever_connected
        self._drop_socket()
        if was_up:
            self._set_state(ConnectionState.LOST, error)
        self._sleep(self._next_delay())

    def _connect_pass(self, request: _ConnectRequest | None) -> BrokerUrl | None:
        """Tries each URL once, in order; returns the one connected to, or None after the pass failed."""
        errors: list[PcaError] = []
        for i, url in enumerate(self._urls):
            if self._closing or (request is not None and request.cancelled):
                break
            attempt = self.config.connect_timeout
            if request is not None:
                left = request.remaining()
                if left is not None:
                    if left <= 0:
                        break
                    # An even share of what is left, so that a host that never answers cannot take the
                    # whole of connect()'s time from the brokers after it.
                    attempt = min(attempt, left / (len(self._urls) - i))
                with self._cond:
                    request.current = url
            error = self._attempt(url, attempt)
            if error is None:
                self._connected(url, request)
                return url
            errors.append(error)
            if request is not None:
                with self._cond:
                    request.current = None
                    request.tried.append(f"{url} ({error})")
        self._pass_failed(request, errors)
        return None

    def _attempt(self, url: BrokerUrl, timeout: float) -> PcaError | None:
        """One connection to ``url``: TCP, TLS, CONNECT/CONNACK and the subscriptions; None on success."""
        client = self._client
        deadline = time.monotonic() + timeout
        self._drop_socket(url)
        client.connect_timeout = max(timeout, 0.001)
        username = url.username if url.username is not None else self.config.username
        password = url.password if url.username is not None else self.config.password
        client.username_pw_set(username, password.reveal() if password is not None and username else None)
        self._connack = None
        self._disconnect_reason = ""
        try:
            if self._v5:
                properties = None
                if self.options.persistent_session:
                    properties = Properties(PacketTypes.CONNECT)
                    properties.SessionExpiryInterval = self.options.session_expiry
                client.connect(url.host, url.port, self.options.keepalive,
                               clean_start=not self.options.persistent_session, properties=properties)
            else:
                client.connect(url.host, url.port, self.options.keepalive)
        except (OSError, ValueError) as exc:
            return ConnectionFailed(NAME, _describe(exc))
        while self._connack is None and client.socket() is not None and not self._abandoned():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pump(min(left, _STEP))
        reason = self._connack
        if reason is None:
            self._drop_socket()
            if self._abandoned():
                return ConnectionFailed(NAME, "abandoned")
            if client.socket() is None and self._disconnect_reason:
                return ConnectionFailed(NAME, f"closed before CONNACK ({self._disconnect_reason})")
            return ConnectionFailed(NAME, f"no CONNACK within {timeout:.1f} s")
        if reason.is_failure:
            self._drop_socket()
            if str(reason) in _AUTH_REFUSALS:
                who = f" of user {username!r}" if username else " (none given)"
                return AuthenticationError(NAME, f"refused the credentials{who}: {reason}")
            return ConnectionFailed(NAME, f"refused the connection: {reason}")
        with self._cond:
            self._up = not self._closing
            subscriptions = self._routes.subscriptions
        if subscriptions:
            ack = self._send_subscribe(list(subscriptions))
            while ack is not None and not ack.event.is_set() and client.socket() is not None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    _log.warning("mqtt: no SUBACK from %s yet; messages may be missed until it comes", url)
                    break
                self._pump(min(left, _STEP))
            if client.socket() is None:
                with self._cond:
                    self._up = False
                return ConnectionFailed(NAME, f"lost while subscribing ({self._disconnect_reason})")
        return None

    def _connected(self, url: BrokerUrl, request: _ConnectRequest | None) -> None:
        with self._cond:
            if self._closing:  # close() won the race: it reports CLOSED, and the thread disconnects
                if request is not None:
                    self._finish(request, TransportError(NAME, "mqtt: closed while connecting"))
                return
            again = self._ever_connected
            self._ever_connected = True
            self._ready = self._up
            self._request = None
        if self._auth_logged:
            _log.info("mqtt: %s accepted the credentials again", url)
        self._auth_logged = False
        _log.info("mqtt: connected to %s as %r", url, self._client_id)
        self._set_state(ConnectionState.RECONNECTED if again else ConnectionState.CONNECTED)
        if request is not None:
            with self._cond:
                self._finish(request, None)

    def _pass_failed(self, request: _ConnectRequest | None, errors: list[PcaError]) -> None:
        refused = [e for e in errors if isinstance(e, AuthenticationError)]
        summary = "; ".join(f"{url} ({error})" for url, error in zip(self._urls, errors, strict=False))
        if request is not None and not self._ever_connected:
            # A connect() call is waiting: it gets the error, and nothing keeps trying behind its back.
            error: PcaError
            if refused:
                error = AuthenticationError(NAME, f"mqtt: the broker refused the credentials: {summary}")
            else:
                error = ConnectionFailed(NAME, f"mqtt: could not connect to any broker: {summary}")
            with self._cond:
                self._want = False
                self._request = None
                self._finish(request, error)
            return
        if self._closing:
            return
        if refused:
            self._delay_index = len(self.options.reconnect_delays) - 1  # slow retries, never a hot loop
        delay = self._next_delay()
        if refused and not self._auth_logged:
            self._auth_logged = True
            _log.error("mqtt: the broker refused the credentials (%s); retrying every %.0f s until they are "
                       "accepted", summary, self.options.reconnect_delays[-1])
        elif not refused:
            _log.warning("mqtt: could not connect to any broker (%s); retrying in %.1f s", summary, delay)
        else:
            _log.debug("mqtt: credentials still refused; retrying in %.1f s", delay)
        self._sleep(delay)

    def _serve(self, url: BrokerUrl) -> None:
        """Runs the client's loop until the connection ends; then reports the loss and waits to reconnect."""
        client = self._client
        since = time.monotonic()
        while not self._closing:
            rc = self._pump(_LOOP_TIMEOUT)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                break
        with self._cond:
            self._up = self._ready = False
            if self._closing:
                return
        self._drop_socket()
        with self._acks_lock:  # subscribe() calls waiting for a SUBACK: it will not come on this connection
            pending, self._subacks = self._subacks, {}
        for ack in pending.values():
            ack.event.set()
        if time.monotonic() - since >= STABLE_AFTER:
            self._delay_index = 0
        reason = self._disconnect_reason or "connection closed"
        self._set_state(ConnectionState.LOST, ConnectionFailed(NAME, f"mqtt: lost {url}: {reason}"))
        delay = self._next_delay()
        _log.warning("mqtt: lost the connection to %s (%s); reconnecting in %.1f s", url, reason, delay)
        self._sleep(delay)

    def _shutdown(self) -> None:
        """On the way out of the thread: sends DISCONNECT if it can before the close deadline, then drops."""
        client = self._client
        if client.socket() is not None:
            with self._cond:
                send = not self._disconnect_sent
                self._disconnect_sent = True
            if send:
                client.disconnect()
            while client.socket() is not None and time.monotonic() < self._close_deadline:
                self._pump(min(max(self._close_deadline - time.monotonic(), 0.0), _STEP))
            self._drop_socket()
        with self._cond:
            self._up = self._ready = False

    def _pump(self, timeout: float) -> MQTTErrorCode:
        """One network step: waits up to ``timeout`` for traffic, reads what is ready, then hands it over.

        Messages that arrive back to back are read first and handed to the handlers together. The core's
        handlers put them on the dispatcher's queue; done one by one between socket calls, each put would
        wake the dispatcher thread and trade the GIL with it at the next system call, which halves the
        throughput. Order is kept, and a message is handed over before the next read waits.
        """
        client = self._client
        rc = client.loop(timeout)
        inbox = self._inbox
        while inbox and len(inbox) < _BATCH and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            before = len(inbox)
            rc = client.loop(0.0)
            if len(inbox) == before:
                break
        if inbox:
            self._deliver()
        return rc

    def _await_on_network_thread(self, info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
        """Waits for a PUBACK on the thread that has to read it: a handler publishing at QoS 1."""
        deadline = time.monotonic() + timeout
        client = self._client
        while not info.is_published() and client.socket() is not None and not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            client.loop(min(left, _STEP))  # messages read meanwhile wait in the inbox for the next hand-over
        return info.is_published()

    def _deliver(self) -> None:
        messages, self._inbox = self._inbox, []
        routes = self._routes
        for message in messages:
            handlers = routes.cache.get(message.topic)
            if handlers is None:
                handlers = tuple(s.handler for s in routes.subscriptions
                                 if topic_matches(s.pattern, message.topic))
                if len(routes.cache) < _ROUTE_CACHE_SIZE:
                    routes.cache[message.topic] = handlers
            for handler in handlers:
                try:
                    handler(message)
                except Exception:
                    _log.exception("mqtt: a handler failed on a message from %s", message.topic)

    # -- helpers ----------------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        protocol = mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311
        clean_session = None if self._v5 else not self.options.persistent_session
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             clean_session=clean_session, protocol=protocol)
        client.enable_logger(logging.getLogger("pca_mqtt.paho"))
        client.suppress_exceptions = True  # a failing callback is logged; it never kills the network loop
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_register_write = _ignore_write_registration
        if self._urls[0].tls:
            client.tls_set_context(self._tls_context())
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
            if tls is not None and tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ValueError) as exc:
            raise ConfigError("mqtt transport", "transport.tls", f"unusable TLS files: {exc}") from None
        if tls is not None and not tls.verify:
            _log.warning("mqtt: transport.tls.verify is false: broker certificates and host names are NOT "
                         "checked; anyone on the path can read and forge the agent's messages")
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _send_subscribe(self, subscriptions: list[Subscription]) -> _SubAck | None:
        topics = [(s.pattern, int(s.qos)) for s in subscriptions]
        ack = _SubAck()
        # The lock spans the call so that a SUBACK read by the network thread finds its waiter.
        with self._acks_lock:
            rc, mid = self._client.subscribe(topics)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                return None
            self._subacks[mid] = ack
        return ack

    def _finish(self, request: _ConnectRequest, error: PcaError | None) -> None:
        """Completes a connect() request; call with ``_cond`` held."""
        request.done = True
        request.error = error
        self._cond.notify_all()

    def _abandoned(self) -> bool:
        request = self._request
        return self._closing or (request is not None and request.cancelled)

    def _next_delay(self) -> float:
        delays = self.options.reconnect_delays
        base = delays[min(self._delay_index, len(delays) - 1)]
        self._delay_index += 1
        jitter = self.options.jitter
        return base * self._random.uniform(1.0 - jitter, 1.0 + jitter)

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._closing, seconds)

    def _drop_socket(self, url: BrokerUrl | None = None) -> None:
        """Closes the client's socket, if any, and leaves paho in its disconnected state.

        ``connect_async`` is paho's public way to drop a connection; the ``disconnect`` that follows finds
        no socket and only marks the client disconnected, which is the state where its connection settings
        (``connect_timeout``) may change.
        """
        url = url or self._urls[0]
        self._client.connect_async(url.host, url.port, self.options.keepalive)
        self._client.disconnect()

    # -- paho callbacks (network thread) ----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._connack = reason
        if not reason.is_failure and flags.session_present:
            _log.debug("mqtt: the broker kept the session")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        # paho reports a dropped socket as "Unspecified error"; only a broker's DISCONNECT carries a reason.
        text = str(reason)
        if not flags.is_disconnect_packet_from_server and text == "Unspecified error":
            text = "connection closed by the broker or the network"
        self._disconnect_reason = text

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      properties: Properties | None) -> None:
        with self._acks_lock:
            ack = self._subacks.pop(mid, None)
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            _log.error("mqtt: the broker refused a subscription: %s", ", ".join(refused))
        if ack is not None:
            ack.refused.extend(refused)
            ack.event.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.append(Message(message.topic, message.payload))


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _describe(exc: BaseException) -> str:
    """A short reason for a failed connection attempt."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
