"""The container thread: one proton Container whose handler owns the connection and routes link events.

proton's objects are not thread safe, so only this thread touches them; other threads post calls
(:class:`~pca_amqp._calls.Calls`). The engine connects, walks the URL list on failure, reconnects with
the core's backoff after a loss and closes; what happens on the links is the business of
:class:`~pca_amqp._receivers.Receivers` (a receiver per subscription, settlement, credit) and
:class:`~pca_amqp._senders.Senders` (a sender per address, dispositions).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import SSLDomain, SSLException, SSLUnavailable
from proton.handlers import MessagingHandler
from proton.reactor import Container

from pca_amqp._calls import Calls
from pca_amqp._errors import NAME, connection_error
from pca_amqp._jobs import ConnectRequest, Publish
from pca_amqp._options import AmqpOptions
from pca_amqp._receivers import Receivers, Receiving
from pca_amqp._senders import Senders
from pca_amqp.addresses import Addressing
from pca_amqp.urls import BrokerUrl
from pca_core.api import (
    AuthenticationError,
    ConfigError,
    ConnectionFailed,
    ConnectionState,
    PcaError,
    Secret,
    Subscription,
    TransportConfig,
    TransportError,
)

_log = logging.getLogger("pca_amqp")

StateReport = Callable[[ConnectionState, "BaseException | None"], None]


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Keeps an error in one event handler from ending the container thread (proton re-raises it)."""

    @functools.wraps(method)
    def guarded(self: Engine, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception:
            _log.exception("amqp: error while handling %s", method.__name__)

    return guarded


class _Timer:
    """A proton timer task that calls ``call()`` unless cancelled."""

    def __init__(self, container: Container, delay: float, call: Callable[[], None]) -> None:
        self._call: Callable[[], None] | None = call
        container.schedule(max(delay, 0.0), self)

    def on_timer_task(self, event: Any) -> None:
        call, self._call = self._call, None
        if call is not None:
            call()

    def cancel(self) -> None:
        self._call = None


@dataclass(eq=False)
class _Pass:
    """One walk over the URL list: which URL is being tried, and why the earlier ones failed."""

    request: ConnectRequest | None
    index: int = 0
    errors: list[tuple[BrokerUrl, PcaError]] = field(default_factory=list)
    timer: _Timer | None = None
    opened: bool = False
    attaching: set[Receiving] = field(default_factory=set)


class Engine(MessagingHandler):
    """The handler of the transport's Container, and everything that runs on its thread.

    Attributes read from other threads: :attr:`up` (publishing is possible) and :attr:`thread`.
    """

    def __init__(self, config: TransportConfig, options: AmqpOptions, urls: tuple[BrokerUrl, ...],
                 addressing: Addressing, container_id: str, report: StateReport) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True, peer_close_is_error=False)
        self.config = config
        self.options = options
        self.urls = urls
        self.addressing = addressing
        self.container_id = container_id
        self.calls = Calls()
        self.up = False
        self.thread: threading.Thread | None = None
        self._report = report
        self._backoff = config.backoff()
        self._container = Container(self)
        self._container.container_id = container_id
        self._container.selectable(self.calls.injector)
        self._ssl = _ssl_domain(config) if any(url.tls for url in urls) else None
        self.receivers = Receivers(self._container, self._session, addressing, self.calls.post,
                                   options.prefetch, config.max_message_size)
        self.senders = Senders(self._container, self._session, options.max_senders)

        # Container thread only.
        self._conn: Any = None
        self._current_session: Any = None  # every link's; RabbitMQ ends it when it refuses an attach
        self._url: BrokerUrl | None = None
        self._condition: tuple[str | None, str | None] = (None, None)
        self._pass: _Pass | None = None
        self._ever_connected = False
        self._refusal_logged = False
        self._closing = False

    # -- the thread -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the container thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="pca-amqp", daemon=True)
            self.thread.start()

    def on_network_thread(self) -> bool:
        """Whether the caller is the container thread (a handler)."""
        return threading.current_thread() is self.thread

    def _run(self) -> None:
        try:
            self._container.run()
        except Exception:
            _log.exception("amqp: the network thread failed; the transport is closed")
        finally:
            self.up = False
            closed = TransportError(NAME, "amqp: the transport is closed")
            self.senders.fail_all(closed)
            if self._pass is not None and self._pass.request is not None:
                self._pass.request.finish(closed)

    def on_pca_amqp_wake(self, event: Any) -> None:  # the event type is _calls.WAKE
        self.calls.run()
        self.receivers.grant_credit()

    # -- connecting -----------------------------------------------------------------------------------

    def begin(self, request: ConnectRequest) -> None:
        """Starts a pass over the URL list for a ``connect()`` call, unless one is under way."""
        if self._closing:
            request.finish(TransportError(NAME, "amqp: connect() after close()"))
        elif self.up and self._pass is None:
            request.finish(None)
        elif self._pass is not None:
            if self._pass.request is None:
                self._pass.request = request
            else:
                request.finish(ConnectionFailed(NAME, "amqp: another connect() is in progress"))
        else:
            self._start_pass(request)

    def _start_pass(self, request: ConnectRequest | None) -> None:
        if self._closing:
            return
        self._pass = _Pass(request)
        self._try_next()

    def _try_next(self) -> None:
        run = self._pass
        assert run is not None
        request = run.request
        if self._closing or (request is not None and request.cancelled) or run.index >= len(self.urls):
            self._pass_failed(run)
            return
        url = self.urls[run.index]
        timeout = self.config.connect_timeout
        left = request.remaining() if request is not None else None
        if left is not None:
            if left <= 0:
                self._pass_failed(run)
                return
            timeout = min(timeout, left / (len(self.urls) - run.index))
        self._url = url
        self._condition = (None, None)
        username = url.username if url.username is not None else self.config.username
        password = url.password if url.password is not None else self.config.password
        kwargs: dict[str, Any] = {"allowed_mechs": "PLAIN" if username else "ANONYMOUS"}
        if username:
            kwargs.update(user=username, password=_reveal(password))
        try:
            conn = self._container.connect(url=url.address, reconnect=False, heartbeat=self.options.heartbeat,
                                           ssl_domain=self._ssl if url.tls else None, **kwargs)
        except Exception as exc:  # proton refuses before any I/O (no SSL support compiled in, say)
            self._attempt_failed(run, ConnectionFailed(NAME, f"cannot connect: {exc}"))
            return
        self._conn = conn
        run.opened = False
        run.timer = _Timer(self._container, timeout, lambda: self._attempt_timed_out(run, conn, timeout))

    def _attempt_timed_out(self, run: _Pass, conn: Any, timeout: float) -> None:
        if run is not self._pass or conn != self._conn:
            return
        if run.opened:
            waiting = ", ".join(sorted(r.subscription.pattern for r in run.attaching))
            _log.warning("amqp: %s has not attached %s yet; messages may be missed until it does",
                         self._url.address if self._url else "?", waiting)
            self._ready(run)
            return
        self._abandon(conn)
        self._attempt_failed(run, ConnectionFailed(NAME, f"no answer within {timeout:.1f} s"))

    def _abandon(self, conn: Any) -> None:
        """Drops a connection whose events no longer matter, closing its socket."""
        self._conn = None
        try:
            conn.close()
            transport = conn.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
        except Exception:
            _log.debug("amqp: could not close an abandoned connection", exc_info=True)

    def _attempt_failed(self, run: _Pass, error: PcaError) -> None:
        if run.timer is not None:
            run.timer.cancel()
        url = self.urls[run.index]
        run.errors.append((url, error))
        if run.request is not None:
            run.request.tried.append(f"{url} ({error})")
        run.index += 1
        if run.index < len(self.urls) and not self._closing:
            _log.info("amqp: skipped %s (%s); trying %s", url.address, error, self.urls[run.index].address)
        self._try_next()

    def _pass_failed(self, run: _Pass) -> None:
        self._pass = None
        refused = any(isinstance(error, AuthenticationError) for _, error in run.errors)
        summary = "; ".join(f"{url} ({error})" for url, error in run.errors) or "no URL tried"
        if run.request is not None and not self._ever_connected:
            error: PcaError
            if run.request.cancelled:
                return
            if refused:
                error = AuthenticationError(NAME, f"amqp: could not connect to any broker: {summary}")
            elif self._closing:
                error = TransportError(NAME, "amqp: closed while connecting")
            else:
                error = ConnectionFailed(NAME, f"amqp: could not connect to any broker: {summary}")
            run.request.finish(error)
            return
        if run.request is not None:
            run.request.finish(ConnectionFailed(NAME, f"amqp: could not connect to any broker: {summary}"))
        if self._closing:
            return
        tried = "; ".join(f"{url.address} ({error})" for url, error in run.errors)
        if refused:
            delay = self._backoff.slowest()
            if self._refusal_logged:
                _log.debug("amqp: credentials still refused; retrying in %.1f s", delay)
            else:
                self._refusal_logged = True
                _log.error("amqp: the broker refused the credentials (%s); retrying every %.0f to %.0f s "
                           "until they are accepted", tried, self._backoff.maximum / 2, self._backoff.maximum)
        else:
            delay = self._backoff.next()
            _log.warning("amqp: could not connect to any broker (%s); retrying in %.1f s", tried, delay)
        _Timer(self._container, delay, lambda: self._start_pass(None))

    @_guarded
    def on_connection_opened(self, event: Any) -> None:
        run = self._pass
        if run is None or event.connection != self._conn or run.opened:
            return
        run.opened = True
        self.up = not self._closing
        run.attaching = self.receivers.open_all()
        if not run.attaching:
            self._ready(run)

    def _ready(self, run: _Pass) -> None:
        """The connection is open and the receivers attached: tell the core and any connect() call."""
        if run.timer is not None:
            run.timer.cancel()
        self._pass = None
        again, self._ever_connected = self._ever_connected, True
        self._backoff.connected()
        address = self._url.address if self._url else "?"
        if self._refusal_logged:
            _log.info("amqp: %s accepted the credentials again", address)
            self._refusal_logged = False
        count = len(self.receivers)
        if again:
            _log.info("amqp: reconnected to %s as %r; %d subscriptions restored", address, self.container_id,
                      count)
        else:
            subscribed = f"; subscribed to {count} patterns" if count else ""
            _log.info("amqp: connected to %s as %r%s", address, self.container_id, subscribed)
        self._report(ConnectionState.RECONNECTED if again else ConnectionState.CONNECTED, None)
        if run.request is not None:
            run.request.finish(None)

    @_guarded
    def on_transport_error(self, event: Any) -> None:
        condition = event.transport.condition
        conn = event.connection
        if condition is None or conn is None or conn != self._conn:
            return
        self._condition = (condition.name, condition.description)
        if condition.name == "amqp:unauthorized-access":
            # RabbitMQ keeps the socket open for seconds after refusing the credentials: end it now.
            self._abandon(conn)
            self._ended()

    @_guarded
    def on_connection_error(self, event: Any) -> None:
        condition = event.connection.remote_condition
        if condition is not None and event.connection == self._conn:
            self._condition = (condition.name, condition.description)
        event.connection.close()

    @_guarded
    def on_connection_closing(self, event: Any) -> None:
        event.connection.close()

    @_guarded
    def on_transport_closed(self, event: Any) -> None:
        conn = event.connection
        if conn is None or conn != self._conn:
            return
        self._conn = None
        self._ended()

    def _ended(self) -> None:
        """The current connection is gone: the attempt failed, or a connection that was up is lost."""
        was_up, self.up = self.up, False
        name, description = self._condition
        if self._closing:
            self._stop()
            return
        run = self._pass
        user = self._url.username if self._url and self._url.username is not None else self.config.username
        error = connection_error(name, description, user=user)
        self.receivers.forget_links()  # and the settles posted for their deliveries
        self.senders.fail_all(ConnectionFailed(NAME, f"amqp: connection lost ({error})"))
        if run is not None:
            if run.opened:
                error = ConnectionFailed(NAME, f"lost while attaching the subscriptions ({error})")
            self._attempt_failed(run, error)
            return
        if not was_up:
            return
        delay = self._backoff.lost()
        address = self._url.address if self._url else "?"
        _log.debug("amqp: lost the connection to %s (%s); reconnecting in %.1f s", address, error, delay)
        self._report(ConnectionState.LOST, ConnectionFailed(
            NAME, f"amqp: lost {address} ({error}); reconnecting in {delay:.1f} s"))
        _Timer(self._container, delay, lambda: self._start_pass(None) if self._pass is None else None)

    # -- closing --------------------------------------------------------------------------------------

    def shutdown(self, grace: float) -> None:
        """Closes the connection politely, then stops the container; within ``grace`` seconds at most."""
        self._closing = True
        self.up = False
        self.senders.fail_all(TransportError(NAME, "amqp: the transport is closed"))
        if self._pass is not None and self._pass.request is not None:
            self._pass.request.finish(TransportError(NAME, "amqp: closed while connecting"))
        conn = self._conn
        if conn is None:
            self._stop()
            return
        conn.close()
        _Timer(self._container, grace, lambda: self._force_stop(conn))

    def _force_stop(self, conn: Any) -> None:
        if self._conn is not None:
            self._abandon(conn)
        self._stop()

    def _stop(self) -> None:
        self.calls.close()
        self._container.stop()

    # -- links --------------------------------------------------------------------------------------

    def _session(self) -> Any:
        """The session new links open on: one per connection, a new one after the broker ended it."""
        session = self._current_session
        if session is None or session.connection != self._conn:
            session = self._current_session = self._conn.session()
            session.open()
        return session

    def attach(self, receiving: Receiving) -> None:
        """Adds a subscription: its receiver opens now when connected, else on the next connect."""
        self.receivers.add(receiving, open_now=self.up and self._conn is not None)

    def detach(self, subscription: Subscription) -> None:
        """Ends a subscription: its receiver closes (the broker drops its queue)."""
        self.receivers.remove(subscription)

    def publish(self, job: Publish) -> None:
        """Sends ``job`` on the sender link of its address (opened on first use); on the container thread."""
        if not self.up or self._conn is None:
            job.finish(ConnectionFailed(NAME, f"amqp: not connected; {job.address} not published"))
            return
        self.senders.send(job)

    @_guarded
    def on_link_opened(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            self.senders.flush(link)
        else:
            self._attached(self.receivers.attached(link))

    def _attached(self, receiving: Receiving | None) -> None:
        """A receiver was attached or refused: the connection is ready once none is left waiting."""
        run = self._pass
        if receiving is not None and run is not None and run.opened and receiving in run.attaching:
            run.attaching.discard(receiving)
            if not run.attaching:
                self._ready(run)

    @_guarded
    def on_link_error(self, event: Any) -> None:
        link = event.link
        condition = link.remote_condition
        reason = f"{condition.name}: {condition.description}" if condition is not None else "refused"
        link.close()
        if link.is_sender:
            refused = f"amqp: the broker refused {getattr(link, 'pca_address', '?')} ({reason})"
            self.senders.link_ended(link, TransportError(NAME, refused))
        else:
            self._attached(self.receivers.refused(link, reason))

    @_guarded
    def on_link_closing(self, event: Any) -> None:
        link = event.link
        link.close()
        if link.is_sender:
            closed = f"amqp: the broker closed the link to {getattr(link, 'pca_address', '?')}"
            self.senders.link_ended(link, TransportError(NAME, closed))
            return
        receiving = self.receivers.closed(link)
        if receiving is not None:
            _Timer(self._container, self.config.reconnect_delay,
                   lambda: self.receivers.reattach(receiving) if self.up else None)

    @_guarded
    def on_session_error(self, event: Any) -> None:
        """The broker ended the session: RabbitMQ's answer to an attach it refuses (a missing exchange).

        The links still waiting for their attach are taken as the refused ones: a subscription is dropped
        (an ERROR names it; a ``subscribe()`` waiting for it raises), a publish fails. The other links
        open again on a new session.
        """
        session = event.session
        session.close()
        if session != self._current_session or self._conn is None:
            return
        self._current_session = None
        condition = session.remote_condition
        reason = f"{condition.name}: {condition.description}" if condition is not None else "session ended"
        self.senders.session_ended(reason)
        for receiving in self.receivers.session_ended(reason):
            self._attached(receiving)

    # -- messages -------------------------------------------------------------------------------------

    @_guarded
    def on_message(self, event: Any) -> None:
        self.receivers.received(event.link, event.delivery, event.message)

    @_guarded
    def on_reactor_quiesced(self, event: Any) -> None:
        """Hands over the batch: proton handled every event of what it read and will wait for I/O now."""
        self.receivers.hand_over()

    @_guarded
    def on_sendable(self, event: Any) -> None:
        self.senders.flush(event.sender)

    @_guarded
    def on_accepted(self, event: Any) -> None:
        self.senders.outcome(event.delivery, None)

    @_guarded
    def on_rejected(self, event: Any) -> None:
        condition = event.delivery.remote.condition
        reason = f" ({condition.name}: {condition.description})" if condition is not None else ""
        rejected = TransportError(NAME, f"amqp: the broker rejected the message{reason}")
        self.senders.outcome(event.delivery, rejected)

    @_guarded
    def on_released(self, event: Any) -> None:
        self.senders.outcome(event.delivery,
                             TransportError(NAME, "amqp: the broker released the message unprocessed"))


def _reveal(password: Secret | str | None) -> str:
    if password is None:
        return ""
    return password.reveal() if isinstance(password, Secret) else str(password)


def _ssl_domain(config: TransportConfig) -> SSLDomain:
    """The client TLS settings: the CA file (or the system's CAs), a client certificate, verification.

    Raises:
        ConfigError: proton cannot use the files, or was built without TLS support.
    """
    tls = config.tls
    try:
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        if tls is not None and tls.ca_file:
            domain.set_trusted_ca_db(tls.ca_file)
        if tls is not None and tls.cert_file:
            domain.set_credentials(tls.cert_file, tls.key_file or tls.cert_file, None)
        if tls is not None and not tls.verify:
            domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
        else:
            domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    except (SSLException, SSLUnavailable) as exc:
        raise ConfigError("amqp transport", "transport.tls", f"usable TLS files and a proton built with TLS "
                                                             f"(proton.SSL.present()): {exc}") from None
    return domain
