"""One connection to a Fluentd ``forward`` input: TCP or TLS, the handshake, chunks out and acks back.

Every call is bounded by a deadline (a :func:`time.monotonic` value); whatever goes wrong raises
:class:`ForwardError` with a one-line message that names the server and what to check, and never a
secret. A connection that raised is not used again: a late acknowledgement is never read by anyone.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pca_fluentd._options import Server
from pca_fluentd._wire import (
    Chunk,
    Credentials,
    ProtocolError,
    ack_of,
    check_pong,
    is_helo,
    new_salt,
    parse_helo,
    ping,
    unpacker,
)

_RECEIVE_SIZE = 65536
_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


class ForwardError(Exception):
    """A server could not be reached, refused the client, or did not acknowledge in time.

    Attributes:
        acked: how many leading chunks of the delivery it ended had been acknowledged.
    """

    def __init__(self, message: str, acked: int = 0) -> None:
        super().__init__(message)
        self.acked = acked


@dataclass(frozen=True, slots=True)
class Dialer:
    """How to reach a server: TLS or not, the handshake's credentials, how long opening may take.

    Attributes:
        tls: the TLS context; None for plain TCP.
        credentials: what to prove in the handshake; None when no shared key is configured (a server
            that sends HELO is then refused with an error that says to set one).
        timeout: seconds to connect, speak TLS and finish the handshake.
    """

    tls: ssl.SSLContext | None
    credentials: Credentials | None
    timeout: float

    def open(self, server: Server, deadline: float) -> Connection:
        """A connection to ``server``, ready for chunks; bounded by ``timeout`` and ``deadline``.

        Raises:
            ForwardError: the server does not answer, its certificate is not trusted, or the handshake
                failed.
        """
        deadline = min(deadline, time.monotonic() + self.timeout)
        try:
            sock = socket.create_connection((server.host, server.port), timeout=_left(deadline))
        except OSError as exc:
            raise ForwardError(f"fluentd: {server} does not answer ({_reason(exc)}); check the server "
                               f"and options.servers") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self._wrap(sock, server, deadline)
            connection = Connection(sock, server)
            if self.credentials is not None:
                connection.handshake(self.credentials, deadline)
        except BaseException:
            sock.close()
            raise
        return connection

    def _wrap(self, sock: socket.socket, server: Server, deadline: float) -> ssl.SSLSocket:
        assert self.tls is not None
        sock.settimeout(_left(deadline))
        try:
            return self.tls.wrap_socket(sock, server_hostname=server.host)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code in _NAME_MISMATCH:
                raise ForwardError(f"fluentd: the certificate of {server} is not for that name "
                                   f"({exc.verify_message}); list the server in options.servers under a name "
                                   f"its certificate holds, or set options.verify = false") from None
            raise ForwardError(f"fluentd: the certificate of {server} is not trusted ({exc.verify_message}); "
                               f"set options.ca_file to the CA that signed it, or options.verify = false"
                               ) from None
        except (OSError, ValueError) as exc:
            raise ForwardError(f"fluentd: TLS with {server} failed ({_reason(exc)}); check that the server "
                               f"speaks TLS (<transport tls>) and options.tls") from None


class Connection:
    """An open connection to one server.

    Attributes:
        server: where it goes.
        keepalive: whether the server takes more than one message per connection (its HELO says).
    """

    def __init__(self, sock: socket.socket, server: Server) -> None:
        self.server = server
        self.keepalive = True
        self._sock = sock
        self._unpacker = unpacker()
        self._closed = False

    def handshake(self, credentials: Credentials, deadline: float) -> None:
        """Answers the server's HELO with a PING and checks its PONG.

        Raises:
            ForwardError: no HELO came in time, or the server refused the login, or did not prove it
                knows the shared key.
        """
        try:
            first = self._receive(deadline, "the handshake (HELO)")
        except ForwardError as exc:
            raise ForwardError(f"{exc}; options.shared_key is set: is the server's <security> section "
                               f"set up too?") from None
        try:
            helo = parse_helo(first)
            if helo.auth_salt and credentials.username is None:
                raise ForwardError(f"fluentd: {self.server} requires a user login; set options.username and "
                                   f"options.password")
            salt = new_salt()
            self.send(ping(helo, credentials, salt), deadline)
            refusal = check_pong(self._receive(deadline, "the handshake (PONG)"), helo, credentials, salt)
        except ProtocolError as exc:
            raise ForwardError(f"fluentd: {self.server}: {exc}") from None
        if refusal is not None:
            check = "options.shared_key, options.username and options.password" if helo.auth_salt \
                else "options.shared_key and options.self_hostname"
            raise ForwardError(f"fluentd: {self.server}: {refusal}; check {check}")
        self.keepalive = helo.keepalive

    def stale(self) -> bool:
        """Whether the server closed this connection while it was idle (it restarted, or timed it out).

        Raises:
            ForwardError: the server sent something unasked (a HELO: it wants the handshake).
        """
        try:
            self._sock.settimeout(0.0)
            data = self._sock.recv(_RECEIVE_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False  # nothing to read: the connection is as it was left
        except OSError:
            return True
        if not data:
            return True
        self._unpacker.feed(data)
        for message in self._unpacker:
            if is_helo(message):
                raise ForwardError(f"fluentd: {self.server} requires the shared-key handshake (it sent "
                                   f"HELO); set options.shared_key")
            raise ForwardError(f"fluentd: {self.server} sent {str(message)[:80]!r} unasked")
        return False

    def send(self, data: bytes, deadline: float) -> None:
        """Writes ``data`` whole before ``deadline``.

        Raises:
            ForwardError: the connection broke or the server stopped reading.
        """
        view = memoryview(data)
        try:
            while view:
                self._sock.settimeout(_left(deadline))
                sent = self._sock.send(view)
                view = view[sent:]
        except TimeoutError:
            raise ForwardError(f"fluentd: {self.server} did not take the data in time") from None
        except OSError as exc:
            raise ForwardError(f"fluentd: the connection to {self.server} broke ({_reason(exc)})") from None

    def acknowledged(self, chunks: Sequence[Chunk], deadline: float) -> int:
        """Reads the acknowledgements of ``chunks``, sent in that order; returns how many came, in order.

        Raises:
            ForwardError: not every chunk was acknowledged by ``deadline``; its ``acked`` says how many
                leading chunks were.
        """
        acked = 0
        try:
            for chunk in chunks:
                waiting = f"the acknowledgement of chunk {acked + 1} of {len(chunks)}"
                ack = ack_of(self._receive(deadline, waiting))
                if ack != chunk.chunk_id:
                    raise ProtocolError(f"it acknowledged chunk {ack!r}, not the one sent next "
                                        f"({chunk.chunk_id!r})")
                acked += 1
        except ProtocolError as exc:
            raise ForwardError(f"fluentd: {self.server}: {exc}", acked) from None
        except ForwardError as exc:
            raise ForwardError(str(exc), acked) from None
        return acked

    def close(self) -> None:
        """Drops the connection at once (no TLS close_notify: the server may be gone); idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # already gone
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _receive(self, deadline: float, waiting_for: str) -> Any:
        """The next message from the server."""
        while True:
            for message in self._unpacker:
                return message
            try:
                self._sock.settimeout(_left(deadline))
                data = self._sock.recv(_RECEIVE_SIZE)
            except TimeoutError:
                raise ForwardError(f"fluentd: {self.server} did not send {waiting_for} in time") from None
            except OSError as exc:
                raise ForwardError(f"fluentd: the connection to {self.server} broke while waiting for "
                                   f"{waiting_for} ({_reason(exc)})") from None
            if not data:
                raise ForwardError(f"fluentd: {self.server} closed the connection before {waiting_for}")
            try:
                self._unpacker.feed(data)
            except Exception as exc:  # BufferFull: nothing a server has to say is that long
                raise ForwardError(f"fluentd: {self.server} sent more than a reply ({exc})") from None


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; a tiny positive value once it passed, so that a call fails at once."""
    return max(deadline - time.monotonic(), 0.001)


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return " ".join(text.split())
