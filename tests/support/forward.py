"""A Fluentd Forward protocol v1 receiver for tests, as Fluentd's ``in_forward`` receives.

It decodes the four carrier modes of the specification
(https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1): Message
``[tag, time, record, option?]``, Forward ``[tag, [[time, record], ...], option?]``, PackedForward
``[tag, <<[time, record]>>*, option?]`` (bin or str) and CompressedPackedForward (the same, gzipped, with the
option ``compressed: "gzip"``), times as integers or EventTime (ext type 0). A message whose option carries
``chunk`` is answered with ``{"ack": chunk}``. With a shared key it runs the HELO, PING, PONG handshake
first, with users the user authentication too, and serves TLS with a certificate.

It is stricter than ``in_forward``: what the specification does not allow is recorded in
:attr:`ForwardReceiver.errors`. A request that cannot be decoded (broken msgpack, a float time, a record that
is no map, a packed stream ending in a partial entry, a failed handshake) closes its connection, and nothing
of it is stored; a request that is no array is ignored, as the specification says, and a ``size`` option
that miscounts the events is only recorded.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from tests.support.certs import CertPair

_TIMEOUT = 10.0
"""How long starting or stopping may take."""

_NANOS = 1_000_000_000
_SECONDS_NANOS = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class ForwardEvent:
    """One event the receiver stored.

    Attributes:
        tag: its tag.
        time: its time in seconds since the epoch (nanoseconds as a fraction for an EventTime).
        record: its record, strings decoded as str.
        mode: the carrier mode that brought it: "message", "forward", "packed" or "compressed".
        event_time: whether its time came as an EventTime rather than an integer.
    """

    tag: str
    time: float
    record: dict[str, Any]
    mode: str
    event_time: bool


class _EventTime(float):
    """An EventTime as decoded: its seconds since the epoch, telling it apart from an integer time."""

    __slots__ = ()


class _Malformed(Exception):
    """A request the specification does not allow."""


def _ext_hook(code: int, data: bytes) -> object:
    """Decodes EventTime (ext type 0); other extension types stay ExtType."""
    if code != 0:
        return msgpack.ExtType(code, data)
    if len(data) != 8:
        raise _Malformed(f"EventTime of {len(data)} bytes, not 8")
    seconds, nanos = _SECONDS_NANOS.unpack(data)
    if nanos >= _NANOS:
        raise _Malformed(f"EventTime with {nanos} nanoseconds")
    return _EventTime(seconds + nanos / 1e9)


def _unpacker(max_buffer_size: int = 0) -> msgpack.Unpacker:
    # surrogateescape: a PackedForward stream sent as str (as out_forward does) is not UTF-8, yet must
    # come back to its bytes unchanged.
    return msgpack.Unpacker(raw=False, ext_hook=_ext_hook, unicode_errors="surrogateescape",
                            max_buffer_size=max_buffer_size)


def _hex_sha512(*parts: str | bytes) -> str:
    digest = hashlib.sha512()
    for part in parts:
        digest.update(_bytes(part))
    return digest.hexdigest()


def _same(digest: str, expected: str) -> bool:
    return hmac.compare_digest(_bytes(digest), _bytes(expected))


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _events(tag: str, entries: list[Any], mode: str) -> list[ForwardEvent]:
    """The events of Forward entries or of a packed stream; _Malformed if one is no [time, record]."""
    events = []
    for entry in entries:
        if type(entry) is not list or len(entry) != 2:
            raise _Malformed(f"{mode} entry is no [time, record]: {entry!r:.200}")
        time, record = entry
        kind = type(time)
        if (kind is not int and kind is not _EventTime) or type(record) is not dict:
            raise _Malformed(f"{mode} entry is no [integer or EventTime, map]: {entry!r:.200}")
        events.append(ForwardEvent(tag, float(time), record, mode, kind is _EventTime))
    return events


def _packed(tag: str, stream: bytes, mode: str) -> list[ForwardEvent]:
    """The events of a (decompressed) PackedForward stream."""
    unpacker = _unpacker(len(stream) + 1)
    unpacker.feed(stream)
    unpacker.feed(b"\xc0")  # a nil behind the stream: a partial entry at its end would take it in
    entries = list(unpacker)
    if not entries or entries.pop() is not None:
        raise _Malformed(f"{mode} stream ends in a partial entry")
    return _events(tag, entries, mode)


def _decode(message: list[Any]) -> tuple[list[ForwardEvent], dict[str, Any]]:
    """The events and the option of one request; _Malformed if it is in no mode of the specification."""
    if not 2 <= len(message) <= 4 or type(message[0]) is not str:
        raise _Malformed(f"request is no [tag, ...]: {message!r:.200}")
    tag, entries = message[0], message[1]
    kind = type(entries)
    if kind is int or kind is _EventTime:  # the Message mode
        if len(message) < 3 or type(message[2]) is not dict:
            raise _Malformed(f"Message request is no [tag, time, record, option?]: {message!r:.200}")
        events = [ForwardEvent(tag, float(entries), message[2], "message", kind is _EventTime)]
        return events, _option(message, 3)
    if len(message) > 3:
        raise _Malformed(f"request of {len(message)} elements is no Forward or PackedForward one")
    option = _option(message, 2)
    if kind is list:
        return _events(tag, entries, "forward"), option
    if kind is not bytes and kind is not str:
        raise _Malformed(f"second element is no time, array, bin or str: {entries!r:.200}")
    if option.get("compressed") != "gzip":  # other values are ignored, as the specification says
        return _packed(tag, _bytes(entries), "packed"), option
    if kind is str:
        raise _Malformed("CompressedPackedForward entries are str, not bin")
    try:
        stream = gzip.decompress(entries)  # every member of a concatenation
    except (OSError, EOFError, ValueError) as exc:
        raise _Malformed(f"CompressedPackedForward entries are no gzip: {exc}") from None
    return _packed(tag, stream, "compressed"), option


def _option(message: list[Any], index: int) -> dict[str, Any]:
    """The option of a request at this index, {} without one."""
    option = message[index] if len(message) > index else {}
    if type(option) is not dict:
        raise _Malformed(f"option is no map: {option!r:.200}")
    return option


class _Connection(asyncio.Protocol):
    """One client connection: its handshake, then its requests."""

    def __init__(self, receiver: ForwardReceiver) -> None:
        self.receiver = receiver
        self.unpacker = _unpacker()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.nonce = os.urandom(16)
        self.auth_salt = os.urandom(16) if receiver._users else b""
        self.established = receiver._shared_key is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.receiver._connected(self)
        if not self.established:
            self._send(["HELO", {"nonce": self.nonce, "auth": self.auth_salt, "keepalive": True}])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.receiver._disconnected(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.unpacker.feed(data)
            for message in self.unpacker:
                if self.established:
                    self._request(message)
                else:
                    self._ping(message)
                if self.closed:
                    return
        except Exception as exc:
            self._refuse(f"{type(exc).__name__}: {exc}")

    def _request(self, message: object) -> None:
        if message is None:
            return  # a heartbeat
        if type(message) is not list:
            # The specification: servers SHOULD ignore requests that are no array.
            self.receiver._error(f"{self.peer}: ignored a request that is no array: {message!r:.200}")
            return
        events, option = _decode(message)
        size = option.get("size")
        if size is not None and size != len(events):
            self.receiver._error(f"{self.peer}: option size {size!r} but {len(events)} events")
        chunk = option.get("chunk")
        if chunk is None:
            self.receiver._store(events)
        elif self.receiver._take_drop():
            self.abort()
        elif not self.receiver.withhold_acks:
            self.receiver._store(events, acked=True)
            self._send({"ack": chunk})

    def _ping(self, message: object) -> None:
        if (type(message) is not list or len(message) != 6 or message[0] != "PING"
                or not all(type(message[i]) is str for i in (1, 3, 4, 5))
                or not isinstance(message[2], str | bytes)):
            self._pong_refusal("invalid ping message", f"{message!r:.200}")
            return
        _, hostname, salt, digest, username, password = message
        r = self.receiver
        assert r._shared_key is not None
        if not _same(digest, _hex_sha512(salt, hostname, self.nonce, r._shared_key)):
            reason = "shared_key mismatch"
        elif r._users and (username not in r._users or not _same(
                password, _hex_sha512(self.auth_salt, username, r._users[username]))):
            reason = "username/password mismatch"
        else:
            reason = ""
        r._handshake((hostname, username or None, not reason))
        if reason:
            self._pong_refusal(reason, f"client {hostname!r}, user {username!r}")
            return
        self._send(["PONG", True, "", r._self_hostname,
                    _hex_sha512(salt, r._self_hostname, self.nonce, r._shared_key)])
        self.established = True

    def _pong_refusal(self, reason: str, detail: str) -> None:
        self.receiver._error(f"{self.peer}: handshake refused: {reason}: {detail}")
        self._send(["PONG", False, reason, "", ""])
        self.close()

    def _refuse(self, error: str) -> None:
        self.receiver._error(f"{self.peer}: {error}")
        self.close()

    def _send(self, message: object) -> None:
        assert self.transport is not None
        self.transport.write(msgpack.packb(message, use_bin_type=True))

    def close(self) -> None:
        """Closes the connection once what was written has left."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Closes the connection at once, dropping what was not sent yet."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class ForwardReceiver:
    """A Fluentd Forward protocol v1 receiver for tests, asyncio in a daemon thread of its own.

    Stored events, counts, handshakes and errors survive :meth:`stop` and :meth:`start`.

    Args:
        host: the address to listen on.
        port: the port to listen on; 0 for a free one, chosen at the first start and kept afterwards.
        cert: serve TLS with this certificate and key.
        shared_key: require the HELO, PING, PONG handshake with this shared key.
        users: also require one of these user names with its password in the handshake.
        self_hostname: the server hostname this receiver tells clients in PONG.

    Attributes:
        withhold_acks: settable at any time: requests with a ``chunk`` option are read, and neither stored
            nor acknowledged (a server that hangs before committing).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, cert: CertPair | None = None,
                 shared_key: str | None = None, users: Mapping[str, str] | None = None,
                 self_hostname: str = "test-receiver") -> None:
        if users and shared_key is None:
            raise ValueError("users authenticate in the handshake, which needs a shared_key")
        self.host = host
        self.port = port
        self._self_hostname = self_hostname
        self.withhold_acks = False
        self._shared_key = shared_key
        self._users = dict(users or {})
        self._tls: ssl.SSLContext | None = None
        if cert is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(cert.cert_file, cert.key_file)
        self._state = threading.Condition()
        self._events: list[ForwardEvent] = []
        self._count = 0
        self._awaited: list[int] = []  # the counts that waiters wait for
        self._acks = 0
        self._connections = 0
        self._drops = 0
        self._handshakes: list[tuple[str, str | None, bool]] = []
        self._errors: list[str] = []
        self._lifecycle = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._open: set[_Connection] = set()  # touched by the loop's thread only

    @property
    def url(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Listens; returns once connections are accepted. Does nothing while running."""
        with self._lifecycle:
            if self._loop is not None:
                return
            sock = socket.create_server((self.host, self.port))  # SO_REUSEADDR: restartable at once
            self.port = sock.getsockname()[1]
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(self._loop_error)
            thread = threading.Thread(target=loop.run_forever, name=f"forward-receiver-{self.port}",
                                      daemon=True)
            thread.start()
            try:
                self._server = asyncio.run_coroutine_threadsafe(
                    loop.create_server(lambda: _Connection(self), sock=sock, ssl=self._tls),
                    loop).result(_TIMEOUT)
            except BaseException:
                sock.close()
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_TIMEOUT)
                loop.close()
                raise
            self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Closes the port and aborts every connection, like a killed process; returns when done.

        Requests read and not acknowledged yet are lost. Does nothing when stopped.
        """
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._shut_down(), loop).result(_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_TIMEOUT)
                if not thread.is_alive():
                    loop.close()
                self._loop = self._thread = self._server = None

    def restart(self) -> None:
        """Stops, then starts again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> ForwardReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def events(self) -> list[ForwardEvent]:
        """Every event stored and not taken yet, in arrival order."""
        with self._state:
            return list(self._events)

    def take_events(self) -> list[ForwardEvent]:
        """Every event stored and not taken yet, in arrival order, forgotten here."""
        with self._state:
            events, self._events = self._events, []
            return events

    @property
    def count(self) -> int:
        """How many events were stored since creation, taken ones included."""
        with self._state:
            return self._count

    def wait_for_count(self, count: int, timeout: float = 20.0) -> bool:
        """Waits until :attr:`count` reaches ``count``; False if it did not within ``timeout`` seconds."""
        with self._state:
            self._awaited.append(count)
            try:
                return self._state.wait_for(lambda: self._count >= count, timeout)
            finally:
                self._awaited.remove(count)

    @property
    def acks(self) -> int:
        """How many acks were sent."""
        with self._state:
            return self._acks

    @property
    def connections(self) -> int:
        """How many connections were accepted."""
        with self._state:
            return self._connections

    @property
    def handshakes(self) -> list[tuple[str, str | None, bool]]:
        """(client hostname, user name or None, accepted) of every well-formed PING."""
        with self._state:
            return list(self._handshakes)

    @property
    def errors(self) -> list[str]:
        """Every protocol error seen (undecodable or refused input, failed authentication), one line each."""
        with self._state:
            return list(self._errors)

    def drop_next_chunks(self, n: int = 1) -> None:
        """Makes the next ``n`` requests with a ``chunk`` option abort their connection once read, storing
        nothing (a server that dies in the middle of a batch)."""
        with self._state:
            self._drops += n

    async def _shut_down(self) -> None:
        assert self._server is not None
        self._server.close()
        connections = list(self._open)
        for connection in connections:
            connection.abort()
        if connections:  # closed sockets only once their connection_lost ran
            await asyncio.wait([connection.lost for connection in connections], timeout=_TIMEOUT)
        await self._server.wait_closed()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self._error(f"asyncio: {context.get('message')}: {context.get('exception')!r}")

    def _connected(self, connection: _Connection) -> None:
        self._open.add(connection)
        with self._state:
            self._connections += 1

    def _disconnected(self, connection: _Connection) -> None:
        self._open.discard(connection)

    def _store(self, events: list[ForwardEvent], *, acked: bool = False) -> None:
        with self._state:
            self._events += events
            self._count += len(events)
            self._acks += acked
            if self._awaited and self._count >= min(self._awaited):
                self._state.notify_all()  # only then: a waiter woken per request would slow the receiver

    def _take_drop(self) -> bool:
        with self._state:
            if self._drops <= 0:
                return False
            self._drops -= 1
            return True

    def _handshake(self, handshake: tuple[str, str | None, bool]) -> None:
        with self._state:
            self._handshakes.append(handshake)

    def _error(self, line: str) -> None:
        with self._state:
            self._errors.append(line)

