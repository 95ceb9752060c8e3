"""One databridge receiver: its connections, its session, the streams defined in that session.

Logging in happens on the secure (TLS) service; streams and events go to the plain data service unless
``options.data_over_tls``. A session the receiver forgot (it restarted, or expired the session) is opened
again and its streams defined again, and the call is tried once more. Any other failure closes the
connections; the next delivery starts with a new login.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated
from thrift.Thrift import TApplicationException, TException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

from pca_thrift._bundle import bundle
from pca_thrift._events import Event
from pca_thrift._gen.exception.ttypes import (
    ThriftAuthenticationException,
    ThriftDifferentStreamDefinitionAlreadyDefinedException,
    ThriftMalformedStreamDefinitionException,
    ThriftSessionExpiredException,
    ThriftStreamDefinitionException,
    ThriftUndefinedEventTypeException,
)
from pca_thrift._gen.general import ThriftEventTransmissionService
from pca_thrift._gen.secure import ThriftSecureEventTransmissionService
from pca_thrift._options import Address, ThriftOptions
from pca_thrift.streams import DatabridgeStream

_STRING_LIMIT = 1 << 20  # a reply is a session or stream id, or an error message
_CONTAINER_LIMIT = 1 << 16


class ReceiverError(Exception):
    """A delivery to one receiver failed; the message is one line that says what to check."""


class _Connection:
    """A Thrift client over one socket (TLS or plain), unframed and buffered, binary protocol."""

    def __init__(self, sock: socket.socket, service: Any) -> None:
        # Every call is flushed whole: Nagle's algorithm would hold a pipelined bundle for the last ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handle = TSocket()
        handle.setHandle(sock)
        self.transport = TBufferedTransport(handle)
        protocol = TBinaryProtocolAccelerated(self.transport, string_length_limit=_STRING_LIMIT,
                                              container_length_limit=_CONTAINER_LIMIT)
        self.client = service.Client(protocol)
        self._socket = sock
        self._timeout = sock.gettimeout()

    def set_timeout(self, seconds: float) -> None:
        # Only when it changes: settimeout gives up the interpreter lock, which costs up to a switch
        # interval (5 ms) to get back while another thread computes.
        if seconds != self._timeout:
            self._socket.settimeout(seconds)
            self._timeout = seconds

    def close(self) -> None:
        with contextlib.suppress(OSError, TTransportException):
            self.transport.close()


class Receiver:
    """Delivers events to the receiver at ``address``; not thread safe (one delivery at a time).

    Args:
        address: the receiver.
        options: the publisher's options (credentials, timeouts, where the data goes).
        context: the TLS settings for the secure service.
    """

    def __init__(self, address: Address, options: ThriftOptions, context: ssl.SSLContext) -> None:
        self.address = address
        self._options = options
        self._context = context
        self._session: str | None = None
        self._data: _Connection | None = None
        self._stream_ids: dict[str, str] = {}  # stream name -> the id the receiver gave it
        self._taken = 0  # events of the delivery in progress the receiver answered for

    def deliver(self, events: Sequence[Event | None], timeout: float) -> None:
        """Sends ``events`` in bundles of ``options.bundle_size``; returns once the receiver took them all.

        Raises:
            ReceiverError: the receiver refused or did not answer. The caller sends the events again later;
                those it took already then arrive twice (at least once).
        """
        try:
            self._deliver(events, timeout)
        except ReceiverError:
            self.disconnect()
            raise
        except ThriftAuthenticationException as exc:
            self.disconnect()
            raise ReceiverError(f"thrift: {self.address} refused the credentials of user "
                                f"{self._options.username!r} ({exc.message}); check the publisher's username "
                                f"and password") from None
        except ssl.SSLCertVerificationError as exc:
            self.disconnect()
            raise ReceiverError(f"thrift: the certificate of {self.address} is not trusted "
                                f"({exc.verify_message}); set options.ca_file to the CA that signed it, or "
                                f"options.verify = false") from None
        except (OSError, TTransportException, EOFError) as exc:
            self.disconnect()
            raise ReceiverError(f"thrift: {self.address} does not answer ({_reason(exc)}); check the "
                                f"receiver and options.urls") from None
        except TApplicationException as exc:
            self.disconnect()
            raise ReceiverError(f"thrift: {self.address} failed a call: {_one_line(exc.message)}") from None

    def disconnect(self) -> None:
        """Closes the data connection and forgets the session (the receiver's own expires in time)."""
        data, self._data = self._data, None
        self._session = None
        self._stream_ids = {}
        if data is not None:
            data.close()

    def logout(self, timeout: float) -> None:
        """Ends the session at the receiver (best effort, within ``timeout``) and closes the connections."""
        session, data = self._session, self._data
        try:
            if session is not None:
                secure = data if self._options.data_over_tls and data is not None else self._secure(timeout)
                secure.set_timeout(timeout)
                try:
                    secure.client.disconnect(session)
                finally:
                    if secure is not data:
                        secure.close()
        except (OSError, TException, EOFError):
            pass  # the receiver forgets the session by itself
        finally:
            self.disconnect()

    # -- calls ----------------------------------------------------------------------------------------

    def _secure(self, timeout: float) -> _Connection:
        address = self.address
        sock = socket.create_connection((address.host, address.secure_port), timeout)
        try:
            tls = self._context.wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
        return _Connection(tls, ThriftSecureEventTransmissionService)

    def _login(self) -> None:
        timeout = self._options.timeout
        secure = self._secure(timeout)
        try:
            self._session = secure.client.connect(self._options.username, self._options.password.reveal())
        except BaseException:
            secure.close()
            raise
        if self._options.data_over_tls:
            self._data = secure
            return
        secure.close()
        address = self.address
        sock = socket.create_connection((address.host, address.data_port), timeout)
        self._data = _Connection(sock, ThriftEventTransmissionService)

    def _stream_id(self, stream: DatabridgeStream) -> str:
        stream_id = self._stream_ids.get(stream.name)
        if stream_id is None:
            assert self._data is not None and self._session is not None
            try:
                stream_id = self._data.client.defineStream(self._session, stream.definition)
            except (ThriftDifferentStreamDefinitionAlreadyDefinedException,
                    ThriftMalformedStreamDefinitionException, ThriftStreamDefinitionException) as exc:
                raise ReceiverError(f"thrift: {self.address} refused the definition of stream "
                                    f"{stream.name} {stream.version} ({type(exc).__name__}: "
                                    f"{_one_line(exc.message)})") from None
            self._stream_ids[stream.name] = stream_id
        return stream_id

    def _deliver(self, events: Sequence[Event | None], timeout: float) -> None:
        """Sends ``events``, logging in first if need be.

        A session the receiver forgot is opened again and what it had not taken is sent again, once.
        """
        self._taken = 0
        for attempt in (1, 2):
            if self._data is None:
                self._login()
            assert self._data is not None
            self._data.set_timeout(timeout)
            try:
                self._send(events)
                return
            except ThriftSessionExpiredException:
                if attempt == 2:
                    raise ReceiverError(f"thrift: {self.address} expired a new session at once") from None
            except ThriftUndefinedEventTypeException as exc:
                if attempt == 2:
                    raise ReceiverError(f"thrift: {self.address} does not know the streams it has just "
                                        f"defined ({_one_line(exc.message)})") from None
            self.disconnect()  # a new login, the streams defined again; late replies go with the connection

    def _send(self, events: Sequence[Event | None]) -> None:
        """Sends what of ``events`` the receiver has not taken, in bundles of ``options.bundle_size``.

        Each bundle is packed and sent before the reply to the one before is read, so that packing
        overlaps the receiver's work; :attr:`_taken` counts the events whose bundle was answered.
        """
        assert self._data is not None and self._session is not None
        client, session, size = self._data.client, self._session, self._options.bundle_size
        ids = self._stream_ids
        answered = None  # the end of the bundle whose reply is due
        for start in range(self._taken, len(events), size):
            chunk = [event for event in events[start:start + size] if event is not None]
            new = {event.stream.name: event.stream for event in chunk if event.stream.name not in ids}
            if new:  # a definition is a call of its own: the reply on its way comes first
                if answered is not None:
                    client.recv_publish()
                    self._taken, answered = answered, None
                for stream in new.values():
                    self._stream_id(stream)
            client.send_publish(bundle(session, chunk, ids))
            if answered is not None:
                client.recv_publish()
                self._taken = answered
            answered = min(start + size, len(events))
        if answered is not None:
            client.recv_publish()
            self._taken = answered


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TTransportException):
        return _one_line(exc.message or "connection lost")
    if isinstance(exc, EOFError):
        return "connection lost"
    return _one_line(exc.strerror or str(exc) or type(exc).__name__) if isinstance(exc, OSError) else str(exc)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]
