"""The test Forward protocol v1 receiver against fluent-logger and hand-built requests, over real sockets."""

from __future__ import annotations

import gzip
import hashlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from fluent.sender import EventTime, FluentSender

from tests.support.forward import ForwardEvent, ForwardReceiver
from tests.support.ports import accepts

TIMEOUT = 10.0
T0 = 1_700_000_000
RECORD = {"message": "hello", "level": "INFO", "n": 1}


class Client:
    """A raw Forward client: sends msgpack requests, reads the server's answers."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, *requests: Any, bin_type: bool = True) -> None:
        """Sends the requests in one write."""
        self.sock.sendall(b"".join(msgpack.packb(r, use_bin_type=bin_type) for r in requests))

    def receive(self) -> Any:
        """The next answer; EOFError when the server closed the connection first."""
        while True:
            for answer in self.unpacker:
                return answer
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.unpacker.feed(data)

    def closed_by_server(self) -> bool:
        """Whether the server closes the connection (within the timeout) without answering anything else."""
        try:
            answer = self.receive()
        except TimeoutError:
            return False
        except (EOFError, ConnectionResetError, ssl.SSLError):
            return True
        raise AssertionError(f"unexpected answer {answer!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receivers() -> Iterator[Any]:
    """Makes started receivers, stopped after the test."""
    made: list[ForwardReceiver] = []

    def make(**kwargs: Any) -> ForwardReceiver:
        receiver = ForwardReceiver(**kwargs)
        made.append(receiver)
        receiver.start()
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def receiver(receivers) -> ForwardReceiver:
    return receivers()


@pytest.fixture
def clients() -> Iterator[Any]:
    """Makes clients, closed after the test."""
    made: list[Client] = []

    def make(port: int, tls: ssl.SSLContext | None = None) -> Client:
        client = Client(port, tls)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def packed(*entries: list[Any]) -> bytes:
    return b"".join(msgpack.packb(entry) for entry in entries)


def sha512_hex(*parts: str | bytes) -> str:
    return hashlib.sha512(b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)).hexdigest()


# The carrier modes


@pytest.mark.parametrize("nanosecond_precision", [False, True])
def test_message_mode_from_fluent_logger(receiver, nanosecond_precision):
    sender = FluentSender("pca", host="127.0.0.1", port=receiver.port,
                          nanosecond_precision=nanosecond_precision)
    try:
        assert sender.emit_with_time("first", T0 + 0.25 if nanosecond_precision else T0, RECORD)
        assert sender.emit("second", {"message": "now"})
    finally:
        sender.close()
    assert receiver.wait_for_count(2, TIMEOUT)
    first, second = receiver.events
    assert first == ForwardEvent("pca.first", T0 + 0.25 if nanosecond_precision else float(T0), RECORD,
                                 "message", nanosecond_precision)
    assert (second.tag, second.record, second.mode) == ("pca.second", {"message": "now"}, "message")
    assert second.event_time is nanosecond_precision
    assert second.time > T0
    assert receiver.acks == 0
    assert receiver.errors == []


def test_message_mode_with_an_option(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", EventTime(T0, 5), RECORD, {"chunk": "m1"}])
    assert client.receive() == {"ack": "m1"}
    assert receiver.events == [ForwardEvent("a.tag", T0 + 5 / 1e9, RECORD, "message", True)]


def test_forward_mode(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", [[T0, {"n": 1}], [EventTime(T0 + 1, 500), {"n": 2}]], {"chunk": "f1", "size": 2}])
    assert client.receive() == {"ack": "f1"}
    assert receiver.events == [ForwardEvent("a.tag", float(T0), {"n": 1}, "forward", False),
                               ForwardEvent("a.tag", T0 + 1 + 500 / 1e9, {"n": 2}, "forward", True)]
    assert receiver.errors == []


@pytest.mark.parametrize("bin_type", [True, False], ids=["bin", "str"])
def test_packed_forward_mode(receiver, clients, bin_type):
    client = clients(receiver.port)
    stream = packed([EventTime(T0, 1), {"n": 1}], [T0 + 1, {"n": 2, "text": "ü"}], [EventTime(T0 + 2, 0), {}])
    # out_forward sends the stream as msgpack str, which is then no UTF-8: the receiver must take it as is.
    client.send(["p.tag", stream, {"chunk": "p1", "size": 3}], bin_type=bin_type)
    assert client.receive() == {"ack": "p1"}
    assert receiver.events == [ForwardEvent("p.tag", T0 + 1 / 1e9, {"n": 1}, "packed", True),
                               ForwardEvent("p.tag", T0 + 1.0, {"n": 2, "text": "ü"}, "packed", False),
                               ForwardEvent("p.tag", T0 + 2.0, {}, "packed", True)]
    assert receiver.errors == []


def test_compressed_packed_forward_mode_with_several_gzip_members(receiver, clients):
    client = clients(receiver.port)
    entries = [[EventTime(T0, n) if n % 2 else T0 + n, {"n": n}] for n in range(10)]
    members = b"".join(gzip.compress(packed(*entries[i:i + 3])) for i in range(0, 10, 3))
    assert members.count(b"\x1f\x8b\x08") >= 4
    client.send(["c.tag", members, {"compressed": "gzip", "chunk": "c1", "size": 10}])
    assert client.receive() == {"ack": "c1"}
    assert receiver.events == [
        ForwardEvent("c.tag", T0 + n / 1e9 if n % 2 else float(T0 + n), {"n": n}, "compressed", bool(n % 2))
        for n in range(10)]
    assert receiver.errors == []


def test_requests_pipelined_in_one_write_and_split_across_writes(receiver, clients):
    client = clients(receiver.port)
    requests = b"".join(msgpack.packb(["s.tag", T0, {"n": n}, {"chunk": f"s{n}"}]) for n in range(50))
    for offset in range(0, len(requests), 7):  # requests cut at arbitrary bytes
        client.sock.sendall(requests[offset:offset + 7])
    assert [client.receive() for _ in range(50)] == [{"ack": f"s{n}"} for n in range(50)]
    assert [event.record["n"] for event in receiver.events] == list(range(50))
    assert receiver.acks == 50


# Acknowledgements


def test_no_chunk_no_answer(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", T0, {"n": 1}], None, ["a.tag", [[T0, {"n": 2}]]],
                ["a.tag", T0, {"n": 3}, {"chunk": "x"}])
    # Answers keep the requests' order: any answer to the first three would come before this ack.
    assert client.receive() == {"ack": "x"}
    assert [event.record["n"] for event in receiver.events] == [1, 2, 3]
    assert receiver.acks == 1


def test_withheld_acks_store_and_answer_nothing(receiver, clients):
    client = clients(receiver.port)
    receiver.withhold_acks = True
    client.send(["a.tag", T0, {"n": 1}, {"chunk": "withheld"}], ["a.tag", T0, {"n": 2}])
    assert receiver.wait_for_count(1, TIMEOUT)  # the request after it was read: so was the withheld one
    receiver.withhold_acks = False
    client.send(["a.tag", T0, {"n": 3}, {"chunk": "acked"}])
    assert client.receive() == {"ack": "acked"}
    assert [event.record["n"] for event in receiver.events] == [2, 3]
    assert receiver.acks == 1


def test_dropped_chunks_abort_the_connection_and_store_nothing(receiver, clients):
    receiver.drop_next_chunks(2)
    for n in (1, 2):
        client = clients(receiver.port)
        client.send(["a.tag", T0, {"n": n}, {"chunk": f"dropped{n}"}])
        assert client.closed_by_server()
    client = clients(receiver.port)
    client.send(["a.tag", T0, {"n": 3}, {"chunk": "kept"}])
    assert client.receive() == {"ack": "kept"}
    assert [event.record["n"] for event in receiver.events] == [3]
    assert (receiver.count, receiver.acks, receiver.connections) == (1, 1, 3)
    assert receiver.errors == []


def test_taking_events_and_waiting_for_a_count(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", [[T0, {"n": n}] for n in range(5)], {"chunk": "1"}])
    assert client.receive() == {"ack": "1"}
    assert [event.record["n"] for event in receiver.take_events()] == list(range(5))
    assert receiver.events == []
    assert receiver.count == 5
    assert not receiver.wait_for_count(6, 0.05)
    client.send(["a.tag", T0, {"n": 5}])
    assert receiver.wait_for_count(6, TIMEOUT)
    assert [event.record["n"] for event in receiver.events] == [5]


# The handshake


def handshake(client: Client, shared_key: str, hostname: str = "client.example", username: str = "",
              password: str = "") -> tuple[dict[str, Any], list[Any], bytes]:
    """HELO, PING, PONG as out_forward does them: returns the HELO options, the PONG and the client's salt."""
    helo = client.receive()
    assert helo[0] == "HELO"
    options = helo[1]
    salt = b"client-salt-0123"
    password_digest = sha512_hex(options["auth"], username, password) if options["auth"] else ""
    client.send(["PING", hostname, salt, sha512_hex(salt, hostname, options["nonce"], shared_key), username,
                 password_digest])
    return options, client.receive(), salt


def test_handshake_with_the_right_key(receivers, clients):
    receiver = receivers(shared_key="s3cret", self_hostname="server.example")
    client = clients(receiver.port)
    options, pong, salt = handshake(client, "s3cret")
    assert isinstance(options["nonce"], bytes) and len(options["nonce"]) >= 16
    assert options["auth"] == b""  # no user authentication
    assert options["keepalive"] is True
    assert pong == ["PONG", True, "", "server.example",
                    sha512_hex(salt, "server.example", options["nonce"], "s3cret")]
    client.send(["a.tag", T0, RECORD, {"chunk": "h1"}])
    assert client.receive() == {"ack": "h1"}
    assert receiver.events == [ForwardEvent("a.tag", float(T0), RECORD, "message", False)]
    assert receiver.handshakes == [("client.example", None, True)]
    assert receiver.errors == []


def test_handshake_nonces_differ_per_connection(receivers, clients):
    receiver = receivers(shared_key="s3cret")
    nonces = {clients(receiver.port).receive()[1]["nonce"] for _ in range(3)}
    assert len(nonces) == 3


def test_handshake_with_a_wrong_key_is_refused(receivers, clients):
    receiver = receivers(shared_key="s3cret")
    client = clients(receiver.port)
    helo = client.receive()
    nonce = helo[1]["nonce"]
    # The data request right behind the PING must not be taken.
    digest = sha512_hex(b"salt", "client.example", nonce, "wrong")
    client.send(["PING", "client.example", b"salt", digest, "", ""], ["a.tag", T0, RECORD, {"chunk": "h1"}])
    assert client.receive() == ["PONG", False, "shared_key mismatch", "", ""]
    assert client.closed_by_server()
    assert (receiver.count, receiver.acks) == (0, 0)
    assert receiver.handshakes == [("client.example", None, False)]
    assert len(receiver.errors) == 1 and "shared_key mismatch" in receiver.errors[0]


@pytest.mark.parametrize(("password", "accepted"), [("pw-alice", True), ("pw-bob", False)])
def test_handshake_with_users(receivers, clients, password, accepted):
    receiver = receivers(shared_key="s3cret", users={"alice": "pw-alice", "bob": "pw-bob"})
    client = clients(receiver.port)
    options, pong, salt = handshake(client, "s3cret", username="alice", password=password)
    assert isinstance(options["auth"], bytes) and len(options["auth"]) >= 16
    assert receiver.handshakes == [("client.example", "alice", accepted)]
    if accepted:
        assert pong == ["PONG", True, "", "test-receiver",
                        sha512_hex(salt, "test-receiver", options["nonce"], "s3cret")]
        client.send(["a.tag", T0, RECORD, {"chunk": "u1"}])
        assert client.receive() == {"ack": "u1"}
        assert receiver.count == 1
        assert receiver.errors == []
    else:
        assert pong == ["PONG", False, "username/password mismatch", "", ""]
        assert client.closed_by_server()
        assert len(receiver.errors) == 1


def test_an_unknown_user_is_refused(receivers, clients):
    receiver = receivers(shared_key="s3cret", users={"alice": "pw-alice"})
    _, pong, _ = handshake(clients(receiver.port), "s3cret", username="mallory", password="pw-alice")
    assert pong[:3] == ["PONG", False, "username/password mismatch"]
    assert receiver.handshakes == [("client.example", "mallory", False)]


def test_data_before_the_ping_is_refused(receivers, clients):
    receiver = receivers(shared_key="s3cret")
    client = clients(receiver.port)
    assert client.receive()[0] == "HELO"
    client.send(["a.tag", T0, RECORD, {"chunk": "early"}])
    assert client.receive() == ["PONG", False, "invalid ping message", "", ""]
    assert client.closed_by_server()
    assert (receiver.count, receiver.acks, receiver.handshakes) == (0, 0, [])
    assert len(receiver.errors) == 1 and "invalid ping message" in receiver.errors[0]


def test_no_helo_without_a_shared_key(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", T0, RECORD, {"chunk": "first"}])
    assert client.receive() == {"ack": "first"}  # nothing before it


# TLS, stopping and restarting


def test_tls_with_a_client_verifying_the_test_ca(receivers, clients, server_cert, test_ca):
    receiver = receivers(cert=server_cert, shared_key="s3cret")
    client = clients(receiver.port, ssl.create_default_context(cafile=str(test_ca.ca_file)))
    assert handshake(client, "s3cret")[1][1] is True
    client.send(["t.tag", packed([EventTime(T0, 7), RECORD]), {"chunk": "t1"}])
    assert client.receive() == {"ack": "t1"}
    assert receiver.events == [ForwardEvent("t.tag", T0 + 7 / 1e9, RECORD, "packed", True)]
    assert receiver.errors == []


def test_stop_aborts_connections_and_records_survive_a_restart(receivers, clients, server_cert, test_ca):
    receiver = receivers(cert=server_cert)
    tls = ssl.create_default_context(cafile=str(test_ca.ca_file))
    port = receiver.port
    assert receiver.url == f"127.0.0.1:{port}"
    client = clients(port, tls)
    client.send(["a.tag", T0, {"n": 1}, {"chunk": "1"}])
    assert client.receive() == {"ack": "1"}
    receiver.withhold_acks = True  # a chunk read, not acked when the receiver stops
    client.send(["a.tag", T0, {"n": 2}, {"chunk": "2"}], ["a.tag", T0, {"n": 3}])
    assert receiver.wait_for_count(2, TIMEOUT)
    receiver.stop()
    assert client.closed_by_server()
    assert not accepts(port)
    receiver.stop()  # idempotent
    receiver.withhold_acks = False
    receiver.restart()
    receiver.start()  # no-op while running
    assert receiver.port == port
    assert [event.record["n"] for event in receiver.events] == [1, 3]
    client = clients(port, tls)
    client.send(["a.tag", T0, {"n": 4}, {"chunk": "4"}])
    assert client.receive() == {"ack": "4"}
    assert [event.record["n"] for event in receiver.events] == [1, 3, 4]
    assert (receiver.count, receiver.acks, receiver.connections) == (3, 2, 2)
    assert receiver.errors == []


def test_restart_right_after_stop_gets_the_same_port(receiver, clients):
    for n in range(3):
        client = clients(receiver.port)
        client.send(["a.tag", T0, {"n": n}, {"chunk": str(n)}])
        assert client.receive() == {"ack": str(n)}
        receiver.restart()  # the server closed first: its side of the connection is in TIME_WAIT
        assert client.closed_by_server()
    assert receiver.count == 3


# Malformed input


MALFORMED = {
    "undecodable msgpack": b"\xc1",
    "no tag": msgpack.packb([1, T0, {}]),
    "a float time": msgpack.packb(["a.tag", T0 + 0.5, {}]),
    "a record that is no map": msgpack.packb(["a.tag", T0, ["x"]]),
    "an option that is no map": msgpack.packb(["a.tag", T0, {}, "chunk"]),
    "too many elements": msgpack.packb(["a.tag", [], {}, {}]),
    "a forward entry that is no pair": msgpack.packb(["a.tag", [[T0, {}, {}]]]),
    "a packed stream ending in a partial entry": msgpack.packb(["a.tag", packed([T0, {}], [T0, {}])[:-1]]),
    "a packed stream ending in a partial record": msgpack.packb(["a.tag", packed([T0, {"k": "v"}])[:-2]]),
    "a packed nil entry": msgpack.packb(["a.tag", packed([T0, {}], None)]),
    "a packed entry with a string time": msgpack.packb(["a.tag", packed(["now", {}])]),
    "compressed entries that are no gzip": msgpack.packb(["a.tag", b"not gzip", {"compressed": "gzip"}]),
    "compressed entries as str": msgpack.packb(
        ["a.tag", gzip.compress(packed([T0, {}])), {"compressed": "gzip"}], use_bin_type=False),
    "an EventTime of 4 bytes": msgpack.packb(["a.tag", msgpack.ExtType(0, b"\0\0\0\1"), {}]),
}


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_closes_only_its_connection(receiver, clients, request_bytes):
    bystander = clients(receiver.port)
    bystander.send(["a.tag", T0, {"n": 1}, {"chunk": "before"}])
    assert bystander.receive() == {"ack": "before"}
    offender = clients(receiver.port)
    # A valid request in the same write behind the malformed one: nothing after it is read either.
    offender.sock.sendall(request_bytes + msgpack.packb(["a.tag", T0, {"n": 2}, {"chunk": "after"}]))
    assert offender.closed_by_server()
    assert len(receiver.errors) == 1
    bystander.send(["a.tag", T0, {"n": 3}, {"chunk": "still"}])
    assert bystander.receive() == {"ack": "still"}
    assert [event.record["n"] for event in receiver.events] == [1, 3]


def test_a_request_that_is_no_array_is_ignored_and_recorded(receiver, clients):
    client = clients(receiver.port)
    client.send({"not": "an array"}, ["a.tag", T0, {"n": 1}, {"chunk": "next"}])
    assert client.receive() == {"ack": "next"}
    assert receiver.count == 1
    assert len(receiver.errors) == 1 and "no array" in receiver.errors[0]


def test_a_size_option_that_miscounts_is_recorded(receiver, clients):
    client = clients(receiver.port)
    client.send(["a.tag", [[T0, {}], [T0, {}]], {"size": 3, "chunk": "sized"}])
    assert client.receive() == {"ack": "sized"}
    assert receiver.count == 2
    assert len(receiver.errors) == 1 and "size" in receiver.errors[0]
