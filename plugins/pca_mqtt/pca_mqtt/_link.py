"""The link to the brokers: one paho client, and the one network thread that keeps it connected.

The thread does all of the connecting: a ``connect()`` call hands it a request and waits. Once a connection
has been made, the thread keeps one for as long as the transport is open: when it is lost, the thread
reports ``LOST``, waits (see :class:`~pca_mqtt._retry.RetrySchedule`), then walks the URL list from the first,
and reports ``RECONNECTED`` once a broker accepted and the subscriptions were restored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pca_core.api import (
    AuthenticationError,
    ConnectionFailed,
    ConnectionState,
    PcaError,
    TransportConfig,
    TransportError,
)
from pca_mqtt._client import AUTH_REFUSALS, describe, drop_connection, make_client, start_connect
from pca_mqtt._options import MqttOptions
from pca_mqtt._pump import Pump
from pca_mqtt._retry import RetrySchedule
from pca_mqtt._routing import Router
from pca_mqtt._subscriptions import Subscriptions
from pca_mqtt.urls import BrokerUrl, parse_urls

_log = logging.getLogger("pca_mqtt")

NAME = "mqtt"
_IDLE_WAIT = 1.0  # seconds one select() may wait when nothing happens; wake() ends it earlier
_STEP = 0.1  # seconds of one step while waiting for CONNACK/SUBACK (bounds how late a cancel is seen)
_CLOSE_TIMEOUT = 5.0

StateReport = Callable[[ConnectionState, "BaseException | None"], None]


@dataclass
class _ConnectRequest:
    """A ``connect()`` call waiting for the network thread's pass over the URL list."""

    deadline: float | None
    tried: list[str] = field(default_factory=list)
    current: str | None = None
    done: bool = False
    error: PcaError | None = None
    cancelled: bool = False

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


class Link:
    """The paho client of one transport and its network thread (``pca-mqtt``).

    Args:
        config: the transport's settings.
        options: the plugin's options.
        client_id: the MQTT client id.
        router: routes what is received to the handlers.
        report: called on every connection-state change, from the network thread.
    """

    def __init__(self, config: TransportConfig, options: MqttOptions, client_id: str, router: Router,
                 report: StateReport) -> None:
        self.config = config
        self.options = options
        self.client_id = client_id
        self.urls = parse_urls(config.urls, tls=config.tls is not None)
        self.client = make_client(config, options, client_id, tls=self.urls[0].tls)
        self.pump = Pump(self.client, router.deliver, manual_ack=options.persistent_session)
        self.subscriptions = Subscriptions(self.client, router, v5=options.protocol == "5")
        self._report = report
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self.subscriptions.on_subscribe
        self.client.on_unsubscribe = self.subscriptions.on_unsubscribe
        self._retry = RetrySchedule(config)

        self._cond = threading.Condition()  # guards the fields below; never held while calling out
        self._thread: threading.Thread | None = None
        self._want = False  # the thread should be connected (a connect() asked, or it once succeeded)
        self._request: _ConnectRequest | None = None
        self._closing = False
        self._close_deadline = 0.0
        self._up = False  # CONNACK accepted and the socket alive: publish and subscribe go straight out
        self._ready = False  # _up, and the subscriptions restored
        self._ever_connected = False

        # Written by paho's callbacks on the network thread, and read there too.
        self._connack: ReasonCode | None = None
        self._session_present = False
        self._ids_available = True
        self._disconnect_reason = ""

    @property
    def up(self) -> bool:
        """Whether the connection is up: publishing is possible."""
        return self._up

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def on_network_thread(self) -> bool:
        """Whether the caller is the network thread (a handler)."""
        return threading.current_thread() is self._thread

    def connect(self, timeout: float | None) -> None:
        """Has the network thread connect, and waits; see :meth:`MqttTransport.connect`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            # Wait while the thread is busy: reconnecting on its own, or ending an abandoned pass.
            idle = self._cond.wait_for(lambda: self._closing or self._ready or not self._want,
                                       _left(deadline))
            if self._closing:
                raise TransportError(NAME, "mqtt: connect() after close()")
            if self._ready:
                return
            if not idle:
                raise ConnectionFailed(NAME, f"mqtt: not connected within {timeout} s (still trying "
                                             f"{', '.join(map(str, self.urls))})")
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

    def close(self, timeout: float | None) -> bool:
        """Ends the thread, which acknowledges what was handled and disconnects; False if already closed.

        Returns within ``timeout``: a thread in the middle of a connection attempt to an unresponsive host
        is left to finish it (at most ``transport.connect_timeout`` seconds) and end on its own.
        """
        deadline = time.monotonic() + (_CLOSE_TIMEOUT if timeout is None else timeout)
        with self._cond:
            if self._closing:
                return False
            self._closing = True
            self._close_deadline = deadline
            thread = self._thread
            self._up = self._ready = False
            self._cond.notify_all()
        self.pump.wake()
        if thread is None:
            self.pump.close()
        elif thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                _log.debug("mqtt: the network thread is still finishing a connection attempt")
        return True

    # -- the network thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        self.pump.bind()
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
        self.subscriptions.disconnected()
        drop_connection(self.client, self.urls[0], self.options)
        if was_up:
            self._report(ConnectionState.LOST, error)
        self._sleep(self._retry.after_error())

    def _connect_pass(self, request: _ConnectRequest | None) -> BrokerUrl | None:
        """Tries each URL once, in order; returns the one connected to, or None after the pass failed."""
        errors: list[PcaError] = []
        for i, url in enumerate(self.urls):
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
                    attempt = min(attempt, left / (len(self.urls) - i))
                with self._cond:
                    request.current = str(url)
            error = self._attempt(i, attempt)
            if error is None:
                self._connected(url, request)
                return url
            errors.append(error)
            if i + 1 < len(self.urls) and not self._abandoned():
                _log.info("mqtt: skipped %s (%s); trying %s", url.address, error, self.urls[i + 1].address)
            if request is not None:
                with self._cond:
                    request.current = None
                    request.tried.append(f"{url} ({error})")
        self._pass_failed(request, errors)
        return None

    def _attempt(self, index: int, timeout: float) -> PcaError | None:
        """One connection to a URL: TCP, TLS, CONNECT/CONNACK and the subscriptions; None on success."""
        client, url = self.client, self.urls[index]
        deadline = time.monotonic() + timeout
        self.pump.forget_connection()
        self._connack = None
        self._session_present = False
        self._disconnect_reason = ""
        try:
            start_connect(client, url, self.config, self.options, timeout)
        except (OSError, ValueError) as exc:
            return ConnectionFailed(NAME, describe(exc))
        while self._connack is None and client.socket() is not None and not self._abandoned():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump.step(min(left, _STEP))
        reason = self._connack
        if reason is None:
            drop_connection(client, url, self.options)
            if self._abandoned():
                return ConnectionFailed(NAME, "abandoned")
            if self._disconnect_reason:
                return ConnectionFailed(NAME, f"closed before CONNACK ({self._disconnect_reason})")
            return ConnectionFailed(NAME, f"no CONNACK within {timeout:.1f} s")
        if reason.is_failure:
            drop_connection(client, url, self.options)
            if str(reason) in AUTH_REFUSALS:
                username = url.username if url.username is not None else self.config.username
                who = f" of user {username!r}" if username else " (none given)"
                return AuthenticationError(NAME, f"refused the credentials{who}: {reason}")
            return ConnectionFailed(NAME, f"refused the connection: {reason}")
        with self._cond:
            self._up = not self._closing
        acks = self.subscriptions.connected(self._session_present, ids_available=self._ids_available)
        while not all(ack.event.is_set() for ack in acks) and client.socket() is not None:
            left = deadline - time.monotonic()
            if left <= 0 or self._closing:
                _log.warning("mqtt: no SUBACK from %s yet; messages may be missed until it comes",
                             url.address)
                break
            self.pump.step(min(left, _STEP))
        if client.socket() is None:
            with self._cond:
                self._up = False
            self.subscriptions.disconnected()
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
        self._retry.connected(str(url))
        patterns = self.subscriptions.patterns
        if again:
            _log.info("mqtt: reconnected to %s as %r; %d subscriptions restored", url.address, self.client_id,
                      patterns)
        else:
            subscribed = f"; subscribed to {patterns} patterns" if patterns else ""
            _log.info("mqtt: connected to %s as %r%s", url.address, self.client_id, subscribed)
        self._report(ConnectionState.RECONNECTED if again else ConnectionState.CONNECTED, None)
        if request is not None:
            with self._cond:
                self._finish(request, None)

    def _pass_failed(self, request: _ConnectRequest | None, errors: list[PcaError]) -> None:
        refused = [e for e in errors if isinstance(e, AuthenticationError)]
        if request is not None and not self._ever_connected:
            # A connect() call is waiting: it gets the error, and nothing keeps trying behind its back.
            summary = "; ".join(f"{url} ({error})" for url, error in zip(self.urls, errors, strict=False))
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
        if not self._closing:
            # The log shows addresses alone; the error raised to a connect() call names the users too.
            tried = "; ".join(f"{u.address} ({e})" for u, e in zip(self.urls, errors, strict=False))
            self._sleep(self._retry.after_failed_pass(tried, refused=bool(refused)))

    def _serve(self, url: BrokerUrl) -> None:
        """Runs the client until the connection ends; then reports the loss and waits to reconnect."""
        client = self.client
        while not self._closing:
            rc = self.pump.step(_IDLE_WAIT)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                break
        with self._cond:
            self._up = self._ready = False
            if self._closing:
                return  # the socket stays for _shutdown, which disconnects properly
        self.subscriptions.disconnected()
        drop_connection(client, self.urls[0], self.options)
        reason = self._disconnect_reason or "connection closed"
        delay = self._retry.after_loss(url.address, reason)
        self._report(ConnectionState.LOST, ConnectionFailed(
            NAME, f"mqtt: lost {url.address} ({reason}); reconnecting in {delay:.1f} s"))
        self._sleep(delay)

    def _shutdown(self) -> None:
        """On the way out of the thread: sends what was acknowledged and DISCONNECT, then drops."""
        client = self.client
        if client.socket() is not None:
            self.pump.acks.release(client)  # queued before DISCONNECT, so they leave before it
            client.disconnect()
            while client.socket() is not None and time.monotonic() < self._close_deadline:
                self.pump.step(min(max(self._close_deadline - time.monotonic(), 0.0), _STEP),
                               hand_over=False)
            drop_connection(client, self.urls[0], self.options)
        self.subscriptions.disconnected()
        with self._cond:
            self._up = self._ready = False
        self.pump.close()

    # -- helpers ----------------------------------------------------------------------------------------

    def _finish(self, request: _ConnectRequest, error: PcaError | None) -> None:
        """Completes a connect() request; call with ``_cond`` held."""
        request.done = True
        request.error = error
        self._cond.notify_all()

    def _abandoned(self) -> bool:
        request = self._request
        return self._closing or (request is not None and request.cancelled)

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._closing, seconds)

    # -- paho callbacks (network thread) ----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        self._connack = reason
        self._session_present = not reason.is_failure and flags.session_present
        self._ids_available = getattr(properties, "SubscriptionIdentifierAvailable", 1) != 0
        if self._session_present:
            _log.debug("mqtt: the broker kept the session")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        # paho reports a dropped socket as "Unspecified error"; only a broker's DISCONNECT carries a reason.
        text = str(reason)
        if not flags.is_disconnect_packet_from_server and text == "Unspecified error":
            text = "connection closed by the broker or the network"
        self._disconnect_reason = text


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
