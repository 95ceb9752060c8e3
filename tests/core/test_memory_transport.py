import threading

import pytest

from pca_core.api.errors import ConnectionFailed, TransportError
from pca_core.api.transport import ConnectionState, Message
from pca_core.builtin import memory
from pca_core.builtin.memory import MemoryOptions, MemoryTransport
from pca_core.config import TransportConfig


def make(bus: str = "test") -> MemoryTransport:
    transport = MemoryTransport(TransportConfig(plugin="memory"), MemoryOptions(bus=bus))
    return transport


@pytest.fixture
def pair():
    a, b = make(), make()
    a.connect()
    b.connect()
    yield a, b
    a.close()
    b.close()


def test_round_trip_between_two_transports_on_one_bus(pair):
    a, b = pair
    got: list[Message] = []
    b.subscribe("topology/#", got.append)
    a.publish("topology/MemberActivatedEvent", b'{"memberId":"m1"}')
    assert got == [Message("topology/MemberActivatedEvent", b'{"memberId":"m1"}')]


def test_wildcards_and_fan_out_to_every_matching_subscriber(pair):
    a, b = pair
    hash_, plus, exact, other = [], [], [], []
    b.subscribe("instance/#", hash_.append)
    b.subscribe("instance/+/InstanceStartedEvent", plus.append)
    a.subscribe("instance/status/InstanceStartedEvent", exact.append)
    a.subscribe("tenant/#", other.append)
    a.publish("instance/status/InstanceStartedEvent", b"{}")
    assert len(hash_) == len(plus) == len(exact) == 1
    assert other == []


def test_payload_must_be_bytes(pair):
    a, _ = pair
    with pytest.raises(TypeError, match="bytes"):
        a.publish("x/y", "text")  # type: ignore[arg-type]


def test_publish_before_connect_is_an_error():
    transport = make()
    with pytest.raises(TransportError, match="not connected"):
        transport.publish("a/b", b"")


def test_subscriptions_made_before_connect_take_effect_on_connect():
    receiver, sender = make(), make()
    got = []
    receiver.subscribe("a/#", got.append)
    sender.connect()
    sender.publish("a/1", b"lost: nobody listens yet")
    receiver.connect()
    sender.publish("a/2", b"kept")
    assert [m.topic for m in got] == ["a/2"]
    receiver.close()
    sender.close()


def test_buses_are_isolated():
    a, b = make("one"), make("two")
    a.connect()
    b.connect()
    got = []
    b.subscribe("#", got.append)
    a.publish("x", b"")
    assert got == []
    a.close()
    b.close()


def test_close_is_idempotent_stops_delivery_and_reports_state(pair):
    a, b = pair
    states = []
    b.add_state_listener(lambda state, error: states.append(state))
    got = []
    b.subscribe("#", got.append)
    b.close()
    b.close()
    a.publish("x", b"")
    assert got == []
    assert states == [ConnectionState.CLOSED]
    with pytest.raises(TransportError):
        b.connect()


def test_a_failing_handler_does_not_stop_the_others(pair, caplog):
    a, b = pair
    got = []

    def broken(message):
        raise RuntimeError("boom")

    b.subscribe("#", broken)
    b.subscribe("#", got.append)
    a.publish("t", b"1")
    assert len(got) == 1
    assert "boom" in caplog.text


def test_concurrent_publishers_lose_nothing(pair):
    a, b = pair
    got = []
    lock = threading.Lock()

    def collect(message):
        with lock:
            got.append(message.payload)

    b.subscribe("load/+", collect)

    def publish(n):
        for i in range(500):
            a.publish(f"load/{n}", f"{n}-{i}".encode())

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 * 500
    assert len(set(got)) == 16 * 500


def test_an_outage_fails_publishes_reports_the_state_and_keeps_subscriptions():
    a, b = make("outage"), make("outage")
    a.connect()
    b.connect()
    got, states = [], []
    b.subscribe("#", got.append)
    b.add_state_listener(lambda state, error: states.append((state, type(error).__name__)))
    memory.set_available("outage", False)
    with pytest.raises(ConnectionFailed):
        a.publish("x", b"while down")
    with pytest.raises(ConnectionFailed):
        make("outage").connect()
    memory.set_available("outage", True)
    a.publish("x", b"after")
    assert [m.payload for m in got] == [b"after"]
    assert states == [(ConnectionState.LOST, "ConnectionFailed"), (ConnectionState.RECONNECTED, "NoneType")]
    a.close()
    b.close()
