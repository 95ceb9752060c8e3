"""A real WSO2 databridge Thrift receiver for tests, as the Stratos cartridge agent published to.

Two services speak Thrift's binary protocol over an unframed buffered transport: the secure one
(``ThriftSecureEventTransmissionService``, log in and out and everything else) over TLS on ``port + 100``,
as WSO2 receivers listen, and the plain data one (``ThriftEventTransmissionService``) on ``port``. Sessions
are shared by both; stream definitions outlive sessions and restarts, like WSO2's stream store. Events
are decoded as WSO2's ``ThriftEventConverter`` decodes them, except that a misaligned bundle (values left
over) is recorded in :attr:`DatabridgeReceiver.errors` instead of being silently accepted.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

from pca_thrift._gen.data.ttypes import ThriftEventBundle
from pca_thrift._gen.exception.ttypes import (
    ThriftAuthenticationException,
    ThriftDifferentStreamDefinitionAlreadyDefinedException,
    ThriftMalformedStreamDefinitionException,
    ThriftNoStreamDefinitionExistException,
    ThriftSessionExpiredException,
    ThriftStreamDefinitionException,
    ThriftUndefinedEventTypeException,
)
from pca_thrift._gen.general import ThriftEventTransmissionService as plain_service
from pca_thrift._gen.secure import ThriftSecureEventTransmissionService as secure_service
from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory
from thrift.Thrift import TApplicationException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

from tests.support.certs import CertPair

SECURE_PORT_OFFSET = 100
"""WSO2 receivers listen with TLS on the data port plus this."""
NULL_STRING = "_null"
"""The string value that stands for a null attribute value."""
JOIN_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 10.0

_SECTIONS = ("metaData", "correlationData", "payloadData")
_LIST_OF_TYPE = {"INT": "int", "LONG": "long", "FLOAT": "double", "DOUBLE": "double", "BOOL": "bool",
                 "STRING": "string"}
"""Which list of a bundle holds the values of each attribute type."""
_REFUSALS = (ThriftAuthenticationException, ThriftDifferentStreamDefinitionAlreadyDefinedException,
             ThriftMalformedStreamDefinitionException, ThriftNoStreamDefinitionExistException,
             ThriftSessionExpiredException, ThriftStreamDefinitionException,
             ThriftUndefinedEventTypeException)
_ADMIN: Mapping[str, str] = MappingProxyType({"admin": "admin"})
_PROTOCOLS = TBinaryProtocolAcceleratedFactory()  # pure Python when thrift.protocol.fastbinary is missing

_Method = TypeVar("_Method", bound=Callable[..., Any])
Schema = tuple[tuple[tuple[str, str], ...], ...]
"""A stream's attributes as (name, type) pairs, per section: meta, correlation, payload."""


@dataclass(frozen=True)
class ReceivedEvent:
    """One event the receiver accepted, decoded with its stream's definition.

    Attributes:
        stream_id: ``name:version`` of its stream.
        timestamp: its time stamp, in milliseconds since the epoch.
        meta: the meta data attributes by name.
        correlation: the correlation data attributes by name.
        payload: the payload data attributes by name.
        arbitrary: the bundle's arbitrary data map for this event, None without one.
    """

    stream_id: str
    timestamp: int
    meta: dict[str, Any]
    correlation: dict[str, Any]
    payload: dict[str, Any]
    arbitrary: dict[str, str] | None


def _recorded(method: _Method) -> _Method:
    """Records every refusal of a service call in the receiver's errors, and turns an unexpected
    exception into a TApplicationException so that it never reaches the connection's thread."""

    @functools.wraps(method)
    def call(self: _Handler, *args: Any) -> Any:
        try:
            return method(self, *args)
        except _REFUSALS as exc:
            self.receiver._error(f"{method.__name__}: {type(exc).__name__}: {exc.message}")
            raise
        except Exception as exc:
            self.receiver._error(f"{method.__name__}: internal error: {exc!r}")
            raise TApplicationException(TApplicationException.INTERNAL_ERROR, repr(exc)) from exc

    return call  # type: ignore[return-value]


class _Handler:
    """The calls of both services, on the receiver's state (one handler serves every connection)."""

    def __init__(self, receiver: DatabridgeReceiver) -> None:
        self.receiver = receiver

    @_recorded
    def connect(self, user_name: str, password: str) -> str:
        r = self.receiver
        with r._state:
            accepted = user_name in r._users and r._users[user_name] == password
            r._logins.append((user_name, accepted))
            if not accepted:
                raise ThriftAuthenticationException(f"wrong user name or password for {user_name!r}")
            session = str(uuid.uuid4())
            r._sessions[session] = user_name
            return session

    @_recorded
    def disconnect(self, session_id: str) -> None:
        # WSO2 ignores unknown sessions here: a client may log out after its session expired.
        with self.receiver._state:
            self.receiver._sessions.pop(session_id, None)
            self.receiver._logouts += 1

    @_recorded
    def defineStream(self, session_id: str, definition: str) -> str:
        r = self.receiver
        with r._state:
            r._check_session(session_id)
            parsed, schema = _parse_definition(definition)
            stream_id = f"{parsed['name']}:{parsed['version']}"
            known = r._schemas.get(stream_id)
            if known is not None and known != schema:
                raise ThriftDifferentStreamDefinitionAlreadyDefinedException(
                    f"{stream_id} is already defined with other attributes")
            if known is None:
                r._schemas[stream_id] = schema
                r._definitions[stream_id] = parsed
            return stream_id

    @_recorded
    def findStreamId(self, session_id: str, name: str, version: str) -> str:
        r = self.receiver
        with r._state:
            r._check_session(session_id)
            stream_id = f"{name}:{version}"
            if stream_id not in r._schemas:
                raise ThriftNoStreamDefinitionExistException(f"no stream {stream_id}")
            return stream_id

    @_recorded
    def publish(self, bundle: ThriftEventBundle) -> None:
        r = self.receiver
        with r._state:
            r._check_session(bundle.sessionId)
            events, leftovers = _decode(bundle, r._schemas)
            if leftovers:
                r._error(f"publish: misaligned bundle of {len(events)} events: left over {leftovers}")
            r._events.extend(events)
            if r._awaited and len(r._events) >= min(r._awaited):
                r._state.notify_all()  # only then: a waiter woken per bundle would slow the receiver down

    @_recorded
    def deleteStreamById(self, session_id: str, stream_id: str) -> bool:
        r = self.receiver
        with r._state:
            r._check_session(session_id)
            r._definitions.pop(stream_id, None)
            return r._schemas.pop(stream_id, None) is not None

    def deleteStreamByNameVersion(self, session_id: str, name: str, version: str) -> bool:
        return self.deleteStreamById(session_id, f"{name}:{version}")


def _parse_definition(text: str) -> tuple[dict[str, Any], Schema]:
    """The JSON of a stream definition and its attributes; ThriftMalformedStreamDefinitionException if
    it is no definition."""

    def malformed(why: str) -> ThriftMalformedStreamDefinitionException:
        return ThriftMalformedStreamDefinitionException(f"malformed stream definition: {why}")

    try:
        parsed = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise malformed(f"not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise malformed("not a JSON object")
    for key in ("name", "version"):
        if not isinstance(parsed.get(key), str) or not parsed[key]:
            raise malformed(f"no {key}")
    schema = []
    for section in _SECTIONS:
        attributes = parsed.get(section) or []
        if not isinstance(attributes, list):
            raise malformed(f"{section} is not a list")
        pairs = []
        for attribute in attributes:
            if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str):
                raise malformed(f"an attribute of {section} has no name: {attribute!r}")
            if not isinstance(attribute.get("type"), str) or attribute["type"] not in _LIST_OF_TYPE:
                raise malformed(f"unknown type of {section} attribute {attribute['name']!r}: "
                                f"{attribute.get('type')!r}")
            pairs.append((attribute["name"], attribute["type"]))
        # Values are kept by name, so a repeated name would lose one of them.
        if len({name for name, _ in pairs}) != len(pairs):
            raise malformed(f"{section} repeats an attribute name")
        schema.append(tuple(pairs))
    return parsed, tuple(schema)


def _decode(bundle: ThriftEventBundle, schemas: Mapping[str, Schema]) -> tuple[list[ReceivedEvent], str]:
    """The events of a bundle, and what it left over ("" when nothing); ThriftUndefinedEventTypeException
    for an unknown stream or a list that runs out, which refuses the whole bundle, as in WSO2."""
    lists: dict[str, list[Any]] = {
        "int": bundle.intAttributeList or [], "long": bundle.longAttributeList or [],
        "double": bundle.doubleAttributeList or [], "bool": bundle.boolAttributeList or [],
        "string": bundle.stringAttributeList or []}
    cursors = dict.fromkeys(lists, 0)
    arbitrary = bundle.arbitraryDataMapMap or {}

    def take(kind: str, index: int, what: str) -> Any:
        if cursors[kind] >= len(lists[kind]):
            raise ThriftUndefinedEventTypeException(
                f"event {index}: no {kind} left for {what} ({len(lists[kind])} in the bundle)")
        cursors[kind] += 1
        return lists[kind][cursors[kind] - 1]

    events = []
    count = bundle.eventNum or 0
    for index in range(count):
        stream_id = take("string", index, "the stream id")
        schema = schemas.get(stream_id)
        if schema is None:
            raise ThriftUndefinedEventTypeException(f"event {index}: no stream definition for {stream_id!r}")
        timestamp = take("long", index, "the time stamp")
        sections = []
        for attributes in schema:
            values = {}
            for name, type_ in attributes:
                value = take(_LIST_OF_TYPE[type_], index, f"{stream_id} attribute {name!r}")
                values[name] = None if type_ == "STRING" and value == NULL_STRING else value
            sections.append(values)
        extra = arbitrary.get(index)
        events.append(ReceivedEvent(stream_id, timestamp, *sections, None if extra is None else dict(extra)))
    leftovers = [f"{len(values) - cursors[kind]} {kind}" for kind, values in lists.items()
                 if len(values) > cursors[kind]]
    leftovers += [f"arbitrary data of event {key}" for key in arbitrary if not 0 <= key < count]
    return events, ", ".join(leftovers)


class _Listener:
    """One listening port: an accept thread, and a thread per client connection running a processor."""

    def __init__(self, receiver: DatabridgeReceiver, name: str, port: int,
                 service: ModuleType, handler: _Handler, tls: ssl.SSLContext | None) -> None:
        self.receiver = receiver
        self.name = name
        self.service = service
        self.handler = handler
        self.tls = tls
        self.sock = socket.create_server((receiver.host, port))  # SO_REUSEADDR: restartable at once
        self.lock = threading.Lock()
        self.stopping = False
        self.clients: dict[threading.Thread, socket.socket] = {}
        self.thread = threading.Thread(target=self._accept, name=f"databridge-{name}-accept", daemon=True)
        self.thread.start()

    def stop(self) -> list[threading.Thread]:
        """Wakes and ends the accept thread and every client thread; returns the threads that did not end."""
        with self.lock:
            self.stopping = True
            # On Linux shutting a listening socket down wakes a blocked accept(); closing it would not.
            _shutdown(self.sock)
            for client in self.clients.values():
                _shutdown(client)
        self.thread.join(JOIN_TIMEOUT)
        self.sock.close()
        with self.lock:
            threads = [*self.clients, self.thread]
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        return [thread for thread in threads if thread.is_alive()]

    def _accept(self) -> None:
        while True:
            try:
                client, address = self.sock.accept()
            except OSError:
                return  # stop() shut the socket down
            # As Java Thrift's server sockets do (WSO2's receivers): replies leave at once, not after an ACK.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(client, address),
                                      name=f"databridge-{self.name}-{address[1]}", daemon=True)
            with self.lock:
                if self.stopping:
                    client.close()
                    return
                self.clients[thread] = client
            thread.start()

    def _serve(self, client: socket.socket, address: tuple[Any, ...]) -> None:
        try:
            connection = client if self.tls is None else self._handshake(client, address)
            if connection is not None:
                self._process(connection, address)
        finally:
            # Closed by this thread only, after leaving the registry, so that stop() never shuts down a
            # file descriptor that was closed and reused meanwhile.
            with self.lock:
                registered = self.clients.pop(threading.current_thread(), None)
            if registered is not None:
                registered.close()

    def _handshake(self, client: socket.socket, address: tuple[Any, ...]) -> ssl.SSLSocket | None:
        assert self.tls is not None
        with self.lock:  # the wrapped socket takes over the file descriptor: stop() must shut it down
            if self.stopping:
                return None
            wrapped = self.clients[threading.current_thread()] = self.tls.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False)
        try:
            wrapped.settimeout(HANDSHAKE_TIMEOUT)
            wrapped.do_handshake()
            wrapped.settimeout(None)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
            return None  # closed before saying anything: a port probe, not a refused client
        except OSError as exc:
            if not self.stopping:
                self.receiver._error(f"{self.name} {address[0]}:{address[1]}: TLS handshake failed: {exc}")
            return None
        return wrapped

    def _process(self, client: socket.socket, address: tuple[Any, ...]) -> None:
        transport = TSocket()
        transport.setHandle(client)
        protocol = _PROTOCOLS.getProtocol(TBufferedTransport(transport))
        processor = self.service.Processor(self.handler)
        method = ["?"]

        def begin(name: str, *_: Any) -> None:
            method[0] = name
            # Recorded here, before the processor answers, so the error is there when the client sees it.
            if not callable(getattr(self.service.Iface, name, None)):
                self.receiver._error(f"{self.name}: unknown method {name!r}")

        processor.on_message_begin(begin)
        while True:
            try:
                processor.process(protocol, protocol)
            except (TTransportException, EOFError, OSError):
                return  # the client hung up, or stop() shut the connection down
            except Exception as exc:
                # A protocol error leaves the stream unreadable: this connection is over.
                if not self.stopping:
                    self.receiver._error(f"{self.name} {address[0]}:{address[1]}: {method[0]}: {exc!r}")
                return


def _shutdown(sock: socket.socket) -> None:
    """Shuts a socket's connection down at the socket level, waking a thread blocked on it (for a TLS
    socket too: the ssl module's own shutdown would drop the TLS state under a reading thread)."""
    with contextlib.suppress(OSError):  # not connected (any more)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _free_port_pair(host: str) -> int:
    """A port P on ``host`` such that P and P + 100 are free (right now)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if port + SECURE_PORT_OFFSET > 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + SECURE_PORT_OFFSET))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free pair of ports P, P + {SECURE_PORT_OFFSET} on {host}")


class DatabridgeReceiver:
    """A WSO2 databridge receiver on a data port P (plain) and P + 100 (TLS), with users of its own.

    Args:
        cert: the TLS port's certificate and key.
        users: the user names and passwords ``connect`` accepts.
        host: the address both ports listen on.
        port: the data port P; a free pair of ports by default (7611 is WSO2's, with TLS on 7711).
    """

    def __init__(self, cert: CertPair, *, users: Mapping[str, str] = _ADMIN, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.host = host
        self.port = _free_port_pair(host) if port is None else port
        self.secure_port = self.port + SECURE_PORT_OFFSET
        self.url = f"{host}:{self.secure_port}"
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert.cert_file, cert.key_file)
        self._users = dict(users)
        self._state = threading.Condition()
        self._sessions: dict[str, str] = {}
        self._schemas: dict[str, Schema] = {}
        self._definitions: dict[str, dict[str, Any]] = {}
        self._events: list[ReceivedEvent] = []
        self._awaited: list[int] = []  # the event counts waiters wait for
        self._logins: list[tuple[str, bool]] = []
        self._logouts = 0
        self._errors: list[str] = []
        self._lifecycle = threading.Lock()
        self._listeners: list[_Listener] = []

    def start(self) -> None:
        """Listens on both ports (again after :meth:`stop`); returns once both accept connections."""
        with self._lifecycle:
            if self._listeners:
                return
            handler = _Handler(self)
            # Once listen() has returned the kernel completes connections: no need to probe the ports.
            self._listeners.append(_Listener(self, "plain", self.port, plain_service, handler, None))
            try:
                self._listeners.append(_Listener(self, "secure", self.secure_port, secure_service, handler,
                                                 self._tls))
            except BaseException:
                self._listeners.pop().stop()
                raise

    def stop(self) -> None:
        """Closes both ports and every client connection and forgets the sessions; keeps the definitions.

        Raises:
            RuntimeError: a thread of the receiver did not end in time.
        """
        with self._lifecycle:
            stuck = [thread.name for listener in self._listeners for thread in listener.stop()]
            self._listeners = []
            with self._state:
                self._sessions.clear()
        if stuck:
            raise RuntimeError(f"databridge receiver threads did not end: {stuck}")

    def expire_sessions(self) -> None:
        """Forgets every session: the next call with one raises ThriftSessionExpiredException."""
        with self._state:
            self._sessions.clear()

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every event accepted so far, in order."""
        with self._state:
            return list(self._events)

    def take_events(self) -> list[ReceivedEvent]:
        """Every event accepted so far, in order, forgotten here (a long run keeps its memory flat)."""
        with self._state:
            events, self._events = self._events, []
            return events

    @property
    def definitions(self) -> dict[str, dict[str, Any]]:
        """The stream definitions (their JSON, parsed) by stream id."""
        with self._state:
            return copy.deepcopy(self._definitions)

    @property
    def logins(self) -> list[tuple[str, bool]]:
        """(user name, accepted) of every ``connect`` call."""
        with self._state:
            return list(self._logins)

    @property
    def logouts(self) -> int:
        """How many ``disconnect`` calls came."""
        with self._state:
            return self._logouts

    @property
    def errors(self) -> list[str]:
        """Everything refused or misaligned, one line each."""
        with self._state:
            return list(self._errors)

    def wait_for_events(self, count: int, timeout: float = 20.0) -> list[ReceivedEvent]:
        """Waits until at least ``count`` events came; returns all of them (fewer after ``timeout``)."""
        with self._state:
            self._awaited.append(count)
            try:
                self._state.wait_for(lambda: len(self._events) >= count, timeout)
            finally:
                self._awaited.remove(count)
            return list(self._events)

    def __enter__(self) -> DatabridgeReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _check_session(self, session_id: str | None) -> None:
        if session_id not in self._sessions:
            raise ThriftSessionExpiredException(f"no session {session_id!r}")

    def _error(self, line: str) -> None:
        with self._state:
            self._errors.append(line)
