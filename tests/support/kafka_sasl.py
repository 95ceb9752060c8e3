"""SASL PLAIN in front of a Kafka-protocol broker that cannot authenticate (Tansu 0.6: see tansu.py).

A real Kafka broker with a SASL listener answers a new connection's ApiVersions, then SaslHandshake (the
mechanism) and SaslAuthenticate (the credentials), and refuses anything else until the client is
authenticated. :class:`SaslPlainProxy` does the same for one user, from the Kafka protocol's message
layouts (SaslHandshake v1, SaslAuthenticate v0 to v2), and then relays the connection to the broker.
ApiVersions goes to the broker, whose answer lists both SASL APIs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

from tests.support.relay import CHUNK, Relay

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
FAILED_AUTHENTICATION_DELAY = 0.1


class SaslPlainProxy(Relay):
    """Accepts ``username``/``password`` by SASL PLAIN on ``port``, then relays to ``upstream_port``.

    Attributes:
        attempts: the user names of the authentications tried, in order, with ``True`` when accepted.
    """

    def __init__(self, port: int, upstream_port: int, username: str, password: str) -> None:
        super().__init__(port, upstream_port)
        self._credentials = (username.encode(), password.encode())
        self.attempts: list[tuple[str, bool]] = []

    def _greet(self, client: socket.socket, upstream: socket.socket) -> socket.socket | None:
        mechanism_agreed = False
        while True:
            frame = _read_frame(client)
            if frame is None:
                return None
            api_key, version, correlation = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:
                upstream.sendall(_framed(frame))
                answer = _read_frame(upstream)
                if answer is None:
                    return None
                client.sendall(_framed(answer))
            elif api_key == SASL_HANDSHAKE and version == 1:
                mechanism, _ = _string(frame, _body_offset(frame, flexible=False))
                mechanism_agreed = mechanism == b"PLAIN"
                error = 0 if mechanism_agreed else UNSUPPORTED_SASL_MECHANISM
                client.sendall(_framed(struct.pack(">ihi", correlation, error, 1) + _string_bytes(b"PLAIN")))
            elif api_key == SASL_AUTHENTICATE and mechanism_agreed:
                accepted = self._authenticate(frame, version)
                message = None if accepted else b"Authentication failed: Invalid username or password"
                client.sendall(_framed(_authenticate_answer(correlation, version, message)))
                if accepted:
                    return client
                _linger(client)
                return None
            else:
                raise ValueError(f"api key {api_key} v{version} before authentication (a broker hangs up)")

    def _authenticate(self, frame: bytes, version: int) -> bool:
        offset = _body_offset(frame, flexible=version >= 2)
        if version >= 2:
            length, offset = _uvarint(frame, offset)
            token = frame[offset:offset + length - 1]
        else:
            (length,) = struct.unpack_from(">i", frame, offset)
            token = frame[offset + 4:offset + 4 + length]
        _authorization, user, password = [*token.split(b"\0"), b"", b""][:3]
        accepted = (user, password) == self._credentials
        self.attempts.append((user.decode(errors="replace"), accepted))
        return accepted


def _linger(client: socket.socket) -> None:
    """Waits before hanging up after a refusal, as Kafka does (``connection.failed.authentication.delay.ms``,
    100 ms): a client that sees the connection end before it read the answer takes it for a lost connection.
    """
    deadline = time.monotonic() + FAILED_AUTHENTICATION_DELAY
    with contextlib.suppress(OSError):
        while (left := deadline - time.monotonic()) > 0:
            client.settimeout(left)
            if not client.recv(CHUNK):
                return


def _authenticate_answer(correlation: int, version: int, message: bytes | None) -> bytes:
    error = 0 if message is None else SASL_AUTHENTICATION_FAILED
    if version >= 2:  # flexible: tagged fields after the header and the body, compact strings and bytes
        text = b"\0" if message is None else _uvarint_bytes(len(message) + 1) + message
        return struct.pack(">ibh", correlation, 0, error) + text + b"\x01" + struct.pack(">qb", 0, 0)
    text = struct.pack(">h", -1) if message is None else _string_bytes(message)
    lifetime = struct.pack(">q", 0) if version >= 1 else b""
    return struct.pack(">ih", correlation, error) + text + struct.pack(">i", 0) + lifetime


def _body_offset(frame: bytes, *, flexible: bool) -> int:
    """Where a request's body starts: after api key, version, correlation id, client id (and tags)."""
    (client_id_length,) = struct.unpack_from(">h", frame, 8)
    offset = 10 + max(client_id_length, 0)
    if flexible:
        count, offset = _uvarint(frame, offset)
        if count:
            raise ValueError("tagged fields in a request header are not expected here")
    return offset


def _string(frame: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">h", frame, offset)
    return frame[offset + 2:offset + 2 + length], offset + 2 + length


def _string_bytes(text: bytes) -> bytes:
    return struct.pack(">h", len(text)) + text


def _uvarint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7


def _uvarint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _read_frame(sock: socket.socket) -> bytes | None:
    """One size-prefixed Kafka message, or None when the peer hung up first."""
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">i", header)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
