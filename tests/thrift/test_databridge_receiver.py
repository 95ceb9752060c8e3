"""The test databridge receiver against the generated Thrift clients, over TLS and plain TCP."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from pca_thrift._gen.data.ttypes import ThriftEventBundle
from pca_thrift._gen.exception.ttypes import (
    ThriftAuthenticationException,
    ThriftDifferentStreamDefinitionAlreadyDefinedException,
    ThriftMalformedStreamDefinitionException,
    ThriftNoStreamDefinitionExistException,
    ThriftSessionExpiredException,
    ThriftUndefinedEventTypeException,
)
from pca_thrift._gen.general import ThriftEventTransmissionService as plain_service
from pca_thrift._gen.secure import ThriftSecureEventTransmissionService as secure_service
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TBufferedTransport, TTransportException

from tests.support import databridge as databridge_module
from tests.support.databridge import DatabridgeReceiver, ReceivedEvent
from tests.support.ports import accepts
from tests.support.waiting import wait_until

TIMEOUT = 10.0


class Clients:
    """Generated clients of a receiver's two services; :meth:`close` hangs every one of them up."""

    def __init__(self, receiver: DatabridgeReceiver, ca_file) -> None:
        self.receiver = receiver
        self.tls = ssl.create_default_context(cafile=str(ca_file))
        self.transports: list[TBufferedTransport] = []

    def _client(self, service, sock: socket.socket):
        transport = TSocket()
        transport.setHandle(sock)
        buffered = TBufferedTransport(transport)
        self.transports.append(buffered)
        return service.Client(TBinaryProtocol(buffered))

    def secure(self) -> secure_service.Client:
        sock = socket.create_connection(("127.0.0.1", self.receiver.secure_port), timeout=TIMEOUT)
        return self._client(secure_service, self.tls.wrap_socket(sock, server_hostname="localhost"))

    def plain(self, port: int | None = None, service=plain_service):
        sock = socket.create_connection(("127.0.0.1", port or self.receiver.port), timeout=TIMEOUT)
        return self._client(service, sock)

    def login(self) -> tuple[secure_service.Client, str]:
        client = self.secure()
        return client, client.connect("admin", "admin")

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


@pytest.fixture
def clients(databridge, test_ca) -> Iterator[Clients]:
    made = Clients(databridge, test_ca.ca_file)
    yield made
    made.close()


def definition(name: str, version: str = "1.0.0", **sections) -> str:
    """A stream definition's JSON; ``sections`` maps metaData, correlationData, payloadData to
    ``{attribute: type}``."""
    return json.dumps({"name": name, "version": version, "nickName": name, "description": "test stream",
                       **{section: [{"name": n, "type": t} for n, t in attributes.items()]
                          for section, attributes in sections.items()}})


def test_login_accepts_the_right_password_only(databridge, clients):
    client = clients.secure()
    session = client.connect("admin", "admin")
    with pytest.raises(ThriftAuthenticationException):
        client.connect("admin", "wrong")
    with pytest.raises(ThriftAuthenticationException):
        client.connect("nobody", "admin")
    assert client.connect("admin", "admin") != session  # each login is a session of its own
    client.disconnect(session)

    assert databridge.logins == [("admin", True), ("admin", False), ("nobody", False), ("admin", True)]
    assert databridge.logouts == 1
    assert len(databridge.errors) == 2
    assert all(line.startswith("connect: ThriftAuthenticationException") for line in databridge.errors)


def test_an_event_of_every_type_is_decoded(databridge, clients):
    client, session = clients.login()
    stream = client.defineStream(session, definition(
        "every_type", metaData={"count": "INT", "big": "LONG"}, correlationData={"trace": "STRING"},
        payloadData={"ratio": "DOUBLE", "load": "FLOAT", "up": "BOOL", "text": "STRING", "gone": "STRING"}))
    assert stream == "every_type:1.0.0"

    client.publish(ThriftEventBundle(
        sessionId=session, eventNum=1, intAttributeList=[7], longAttributeList=[1700000000123, 2**40],
        doubleAttributeList=[0.25, 1.5], boolAttributeList=[True],
        stringAttributeList=[stream, "t-1", "hello", "_null"]))

    assert databridge.wait_for_events(1) == [ReceivedEvent(
        stream_id="every_type:1.0.0", timestamp=1700000000123, meta={"count": 7, "big": 2**40},
        correlation={"trace": "t-1"}, payload={"ratio": 0.25, "load": 1.5, "up": True, "text": "hello",
                                               "gone": None},
        arbitrary=None)]
    assert databridge.definitions[stream]["payloadData"][3] == {"name": "text", "type": "STRING"}
    assert databridge.errors == []


def test_a_bundle_of_three_events_of_two_streams(databridge, clients):
    client, session = clients.login()
    logs = client.defineStream(session, definition("logs", payloadData={"message": "STRING", "level": "INT"}))
    stats = client.defineStream(session, definition("stats", "2.0", metaData={"member": "STRING"},
                                                    payloadData={"load": "DOUBLE"}))

    client.publish(ThriftEventBundle(
        sessionId=session, eventNum=3, intAttributeList=[1, 3], longAttributeList=[10, 20, 30],
        doubleAttributeList=[0.5], stringAttributeList=[logs, "first", stats, "m-1", logs, "third"],
        arbitraryDataMapMap={1: {"origin": "agent"}}))

    assert databridge.wait_for_events(3) == [
        ReceivedEvent(logs, 10, {}, {}, {"message": "first", "level": 1}, None),
        ReceivedEvent("stats:2.0", 20, {"member": "m-1"}, {}, {"load": 0.5}, {"origin": "agent"}),
        ReceivedEvent(logs, 30, {}, {}, {"message": "third", "level": 3}, None),
    ]
    assert databridge.errors == []


def test_a_session_of_the_tls_service_works_on_the_plain_one(databridge, clients):
    _, session = clients.login()
    plain = clients.plain()
    stream = plain.defineStream(session, definition("plain", payloadData={"n": "LONG"}))
    assert plain.findStreamId(session, "plain", "1.0.0") == stream
    with pytest.raises(ThriftNoStreamDefinitionExistException):
        plain.findStreamId(session, "plain", "9.9")
    plain.publish(ThriftEventBundle(sessionId=session, eventNum=1, longAttributeList=[5, 6],
                                    stringAttributeList=[stream]))

    assert databridge.wait_for_events(1) == [ReceivedEvent(stream, 5, {}, {}, {"n": 6}, None)]
    assert databridge.errors == ["findStreamId: ThriftNoStreamDefinitionExistException: no stream plain:9.9"]
    assert plain.deleteStreamByNameVersion(session, "plain", "1.0.0") is True
    assert plain.deleteStreamById(session, stream) is False
    assert databridge.definitions == {}


def test_expired_sessions_are_refused_by_both_services(databridge, clients):
    secure, session = clients.login()
    plain = clients.plain()
    stream = secure.defineStream(session, definition("expiring", payloadData={"n": "INT"}))

    databridge.expire_sessions()

    with pytest.raises(ThriftSessionExpiredException):
        secure.findStreamId(session, "expiring", "1.0.0")
    with pytest.raises(ThriftSessionExpiredException):
        plain.publish(ThriftEventBundle(sessionId=session, eventNum=1, intAttributeList=[1],
                                        longAttributeList=[1], stringAttributeList=[stream]))
    assert databridge.events == []
    assert [line.split(":")[0] for line in databridge.errors] == ["findStreamId", "publish"]
    # A new login works again, with the definition kept.
    _, fresh = clients.login()
    assert plain.findStreamId(fresh, "expiring", "1.0.0") == stream


def test_a_different_definition_of_a_defined_stream_is_refused(databridge, clients):
    client, session = clients.login()
    first = definition("conflict", payloadData={"n": "INT"})
    stream = client.defineStream(session, first)
    # The same attributes again (however described) get the same id.
    assert client.defineStream(session, first.replace("test stream", "another description")) == stream
    for other in (definition("conflict", payloadData={"n": "LONG"}),
                  definition("conflict", metaData={"n": "INT"}),
                  definition("conflict", payloadData={"n": "INT", "m": "INT"})):
        with pytest.raises(ThriftDifferentStreamDefinitionAlreadyDefinedException):
            client.defineStream(session, other)

    assert databridge.definitions == {stream: json.loads(first)}
    assert len(databridge.errors) == 3


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    json.dumps({"version": "1.0.0"}),
    json.dumps({"name": "no_version"}),
    definition("bad_type", payloadData={"n": "TEXT"}),
    definition("lower_case_type", payloadData={"n": "int"}),
    json.dumps({"name": "list_type", "version": "1", "payloadData": [{"name": "n", "type": ["INT"]}]}),
    json.dumps({"name": "nameless", "version": "1", "payloadData": [{"type": "INT"}]}),
])
def test_a_malformed_definition_is_refused(databridge, clients, text):
    client, session = clients.login()
    with pytest.raises(ThriftMalformedStreamDefinitionException):
        client.defineStream(session, text)
    assert databridge.definitions == {}
    assert len(databridge.errors) == 1


def test_left_over_values_are_an_error_but_the_events_are_kept(databridge, clients):
    client, session = clients.login()
    stream = client.defineStream(session, definition("aligned", payloadData={"s": "STRING"}))
    client.publish(ThriftEventBundle(sessionId=session, eventNum=1, longAttributeList=[1],
                                     stringAttributeList=[stream, "value", "extra"]))

    assert databridge.wait_for_events(1) == [ReceivedEvent(stream, 1, {}, {}, {"s": "value"}, None)]
    assert databridge.errors == ["publish: misaligned bundle of 1 events: left over 1 string"]


def test_a_bundle_too_short_or_of_an_unknown_stream_is_refused(databridge, clients):
    client, session = clients.login()
    stream = client.defineStream(session, definition("short", payloadData={"a": "INT", "b": "INT"}))
    with pytest.raises(ThriftUndefinedEventTypeException):
        client.publish(ThriftEventBundle(sessionId=session, eventNum=1, intAttributeList=[1],
                                         longAttributeList=[1], stringAttributeList=[stream]))
    with pytest.raises(ThriftUndefinedEventTypeException):
        client.publish(ThriftEventBundle(sessionId=session, eventNum=1, intAttributeList=[1, 2],
                                         longAttributeList=[1], stringAttributeList=["unknown:1.0.0"]))

    assert databridge.events == []
    assert len(databridge.errors) == 2
    assert "no int left" in databridge.errors[0]
    assert "unknown:1.0.0" in databridge.errors[1]


def receiver_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("databridge-")]


def test_a_restart_keeps_definitions_and_forgets_sessions(databridge, clients):
    old_client, old_session = clients.login()
    clients.plain()  # an idle connection, which stop() must close too
    stream = old_client.defineStream(old_session, definition("kept", payloadData={"n": "INT"}))
    # And a client that never starts its TLS handshake.
    with socket.create_connection(("127.0.0.1", databridge.secure_port), timeout=TIMEOUT) as silent:
        # Two accept threads and one per client.
        assert wait_until(lambda: len(receiver_threads()) == 5)
        databridge.stop()
        assert silent.recv(1) == b""  # hung up on

    assert receiver_threads() == []
    assert not accepts(databridge.port) and not accepts(databridge.secure_port)
    with pytest.raises(TTransportException):
        old_client.findStreamId(old_session, "kept", "1.0.0")  # stop() closed its connection
    databridge.stop()  # idempotent

    databridge.start()
    databridge.start()  # idempotent
    assert accepts(databridge.port) and accepts(databridge.secure_port)
    client = clients.secure()
    with pytest.raises(ThriftSessionExpiredException):
        client.findStreamId(old_session, "kept", "1.0.0")
    session = client.connect("admin", "admin")
    assert client.findStreamId(session, "kept", "1.0.0") == stream
    assert list(databridge.definitions) == [stream]
    # Only the old session was refused: the port probes (connect, hang up) are no errors.
    assert [line.split(":")[:2] for line in databridge.errors] == [
        ["findStreamId", " ThriftSessionExpiredException"]]


def test_a_plain_client_on_the_tls_port_is_refused(databridge, clients):
    client = clients.plain(databridge.secure_port, secure_service)
    with pytest.raises(TTransportException):
        client.connect("admin", "admin")

    assert wait_until(lambda: databridge.errors)
    assert databridge.logins == []
    assert len(databridge.errors) == 1
    assert "TLS handshake failed" in databridge.errors[0]


def test_an_unknown_method_gets_an_application_exception(databridge, clients):
    client = clients.plain(service=secure_service)  # connect is a call of the TLS service only
    with pytest.raises(TApplicationException) as refused:
        client.connect("admin", "admin")
    assert refused.value.type == TApplicationException.UNKNOWN_METHOD
    assert databridge.errors == ["plain: unknown method 'connect'"]


def test_a_failing_handler_neither_ends_the_connection_nor_the_receiver(databridge, clients, monkeypatch):
    client, session = clients.login()
    stream = client.defineStream(session, definition("crash", payloadData={"n": "INT"}))
    bundle = ThriftEventBundle(sessionId=session, eventNum=1, intAttributeList=[1], longAttributeList=[2],
                               stringAttributeList=[stream])

    def crash(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(databridge_module, "_decode", crash)
    with pytest.raises(TApplicationException) as refused:
        client.publish(bundle)
    assert refused.value.type == TApplicationException.INTERNAL_ERROR
    monkeypatch.undo()
    client.publish(bundle)  # the same connection still works

    assert databridge.wait_for_events(1) == [ReceivedEvent(stream, 2, {}, {}, {"n": 1}, None)]
    assert databridge.errors == ["publish: internal error: RuntimeError('boom')"]
