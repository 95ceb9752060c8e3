"""Sessions, acknowledgements and subscriptions at the broker, read from Mosquitto's own debug log."""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from pca_core import ConnectionState
from pca_core.testing import Inbox, StateLog, wait_until
from tests.support.mosquitto import Mosquitto

S = ConnectionState
WAIT = 10.0


@pytest.fixture
def debug_broker(tmp_path):
    """A Mosquitto that logs every packet; it keeps sessions (and their messages) across restarts."""
    directory = tmp_path / "debug"
    broker = Mosquitto(directory, extra=("log_type debug", "persistence true",
                                         f"persistence_location {directory}/"))
    broker.start()
    yield broker
    broker.stop()


def runs(broker: Mosquitto) -> list[str]:
    """The broker's log, one part per start."""
    return broker.log().split("mosquitto version")[1:]


def packets(log: str, client_id: str, kind: str) -> list[str]:
    """What the log says of each ``kind`` packet to or from ``client_id``: the text after the client id."""
    pattern = re.compile(rf"^\d+: {kind} (?:to|from) {re.escape(client_id)}\b(.*)$", re.MULTILINE)
    return pattern.findall(log)


def requests(log: str, client_id: str) -> list[tuple[str, list[str]]]:
    """The SUBSCRIBE and UNSUBSCRIBE requests of ``client_id``, in order, each with its patterns."""
    found: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in log.splitlines():
        _, _, text = line.partition(": ")
        if text in (f"Received SUBSCRIBE from {client_id}", f"Received UNSUBSCRIBE from {client_id}"):
            current = []
            found.append((text.split()[1], current))
        elif text.startswith("\t") and current is not None:
            current.append(text.strip().split(" (QoS")[0])
        else:
            current = None
    return found


def mids(texts: list[str]) -> list[int]:
    """The packet ids in PUBLISH (``m3,``) or PUBACK (``Mid: 3,``) log texts."""
    return [int(re.search(r"(?:\bm|Mid: )(\d+),", text).group(1)) for text in texts]


def session(make_mqtt, broker, client_id, **settings):
    return make_mqtt(broker.url, client_id=client_id, persistent_session=True, **settings)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_pubacks_wait_for_every_handler_and_leave_in_the_order_the_messages_came(debug_broker, make_mqtt,
                                                                                  protocol):
    client_id = f"pca-acks-{uuid.uuid4().hex[:8]}"
    publisher = make_mqtt(debug_broker.url, protocol=protocol)
    publisher.connect(timeout=WAIT)
    first = session(make_mqtt, debug_broker, client_id, protocol=protocol)
    held, other = Inbox(ack=False), Inbox()
    first.subscribe("pca/acks/#", held)
    first.subscribe("pca/acks/#", other)  # a second handler of each message, which acknowledges at once
    first.connect(timeout=WAIT)
    for i in range(3):
        publisher.publish(f"pca/acks/{i}", b"%d" % i)
    assert held.wait_for(lambda messages: len(messages) == 3, WAIT)
    held.messages[2].ack()
    held.messages[1].ack()
    first.close(5)  # sends every PUBACK that is due before its DISCONNECT
    assert packets(debug_broker.log(), client_id, "Received DISCONNECT")
    assert packets(debug_broker.log(), client_id, "Received PUBACK") == [], (
        "a PUBACK left before the PUBACK of an earlier message, or before every handler acknowledged")

    again = Inbox(ack=False)
    second = session(make_mqtt, debug_broker, client_id, protocol=protocol)
    second.subscribe("pca/acks/#", again)
    second.connect(timeout=WAIT)
    assert again.wait_for(lambda messages: len(messages) == 3, WAIT)
    assert again.payloads == [b"0", b"1", b"2"]  # none was acknowledged to the broker: all come again
    for message in reversed(again.messages):
        message.ack()
    assert wait_until(lambda: len(packets(runs(debug_broker)[-1], client_id, "Received PUBACK")) == 3, WAIT)
    log = debug_broker.log().split(f"as {client_id}")[-1]  # the second connection
    sent = [text for text in packets(log, client_id, "Sending PUBLISH") if "'pca/acks/" in text]
    assert mids(packets(log, client_id, "Received PUBACK")) == mids(sent)


def test_ack_returns_at_once_while_the_network_thread_is_busy_and_the_puback_follows(debug_broker,
                                                                                      make_mqtt):
    client_id = f"pca-busy-{uuid.uuid4().hex[:8]}"
    subscriber = session(make_mqtt, debug_broker, client_id)
    received, release = Inbox(ack=False), threading.Event()

    def handler(message):
        received(message)
        if message.payload == b"blocks":
            release.wait(WAIT)  # holds the network thread, as a slow handler called on it would

    subscriber.subscribe("pca/busy", handler)
    subscriber.connect(timeout=WAIT)
    publisher = make_mqtt(debug_broker.url)
    publisher.connect(timeout=WAIT)
    publisher.publish("pca/busy", b"first")
    publisher.publish("pca/busy", b"blocks")
    assert received.wait_for(lambda messages: len(messages) == 2, WAIT)
    acknowledging = threading.Thread(target=received.messages[0].ack)
    acknowledging.start()
    acknowledging.join(WAIT)
    busy = acknowledging.is_alive()
    release.set()
    assert not busy, "Message.ack() waited for the network thread"
    received.messages[1].ack()
    assert wait_until(lambda: len(packets(debug_broker.log(), client_id, "Received PUBACK")) == 2, WAIT)


def test_a_clean_session_acknowledges_on_receipt(debug_broker, make_mqtt):
    client_id = f"pca-clean-{uuid.uuid4().hex[:8]}"
    subscriber = make_mqtt(debug_broker.url, client_id=client_id)
    never = Inbox(ack=False)
    subscriber.subscribe("pca/clean", never)
    subscriber.connect(timeout=WAIT)
    publisher = make_mqtt(debug_broker.url)
    publisher.connect(timeout=WAIT)
    publisher.publish("pca/clean", b"x")
    assert never.wait_for_payload(b"x", WAIT)
    assert never.messages[0].settle is None  # nothing to do: paho acknowledged it when it arrived
    assert wait_until(lambda: packets(debug_broker.log(), client_id, "Received PUBACK"), WAIT)


def test_unsubscribe_tells_the_broker_once_no_subscription_uses_the_pattern(debug_broker, make_mqtt):
    client_id = f"pca-unsub-{uuid.uuid4().hex[:8]}"
    transport = make_mqtt(debug_broker.url, client_id=client_id)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect(timeout=WAIT)
    first, second = transport.subscribe("pca/u/a", Inbox()), transport.subscribe("pca/u/a", Inbox())
    other = transport.subscribe("pca/u/b", Inbox())
    transport.subscribe("pca/u/c", Inbox())
    transport.unsubscribe(first)
    transport.unsubscribe(first)
    transport.unsubscribe(other)  # sent in order after whatever the two calls before sent
    assert wait_until(lambda: ("UNSUBSCRIBE", ["pca/u/b"]) in requests(debug_broker.log(), client_id), WAIT)
    assert [r for r in requests(debug_broker.log(), client_id) if r[0] == "UNSUBSCRIBE"] == [
        ("UNSUBSCRIBE", ["pca/u/b"])]
    transport.unsubscribe(second)
    assert wait_until(lambda: ("UNSUBSCRIBE", ["pca/u/a"]) in requests(debug_broker.log(), client_id), WAIT)
    debug_broker.restart()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=WAIT)
    # The clean session ended with the connection; the restored subscriptions are the ones still there.
    assert requests(runs(debug_broker)[-1], client_id) == [("SUBSCRIBE", ["pca/u/c"])]


def test_a_pattern_unsubscribed_while_away_is_unsubscribed_from_the_kept_session(debug_broker, make_mqtt):
    client_id = f"pca-away-{uuid.uuid4().hex[:8]}"
    transport = session(make_mqtt, debug_broker, client_id)
    states = StateLog()
    transport.add_state_listener(states)
    ended = transport.subscribe("pca/away/ended", Inbox())
    transport.subscribe("pca/away/kept", Inbox())
    transport.connect(timeout=WAIT)
    debug_broker.stop()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, timeout=WAIT)
    transport.unsubscribe(ended)
    debug_broker.start()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=WAIT)
    assert "(1, 0)" in packets(runs(debug_broker)[-1], client_id, "Sending CONNACK")[0]  # session present
    assert wait_until(lambda: ("UNSUBSCRIBE", ["pca/away/ended"]) in requests(runs(debug_broker)[-1],
                                                                              client_id), WAIT)
    subscribed = [patterns for kind, patterns in requests(runs(debug_broker)[-1], client_id)
                  if kind == "SUBSCRIBE"]
    assert subscribed == [["pca/away/kept"]]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_session_keeps_messages_published_while_away(broker, make_mqtt, protocol, persistent):
    client_id = f"pca-test-{uuid.uuid4().hex[:8]}"
    first = make_mqtt(broker.url, client_id=client_id, persistent_session=persistent, protocol=protocol)
    first.subscribe("pca/session/#", Inbox())
    first.connect(timeout=10)
    first.close(5)

    publisher = make_mqtt(broker.url, protocol=protocol)
    publisher.connect(timeout=10)
    for i in range(5):
        publisher.publish(f"pca/session/{i}", f"while away {i}".encode())

    inbox = Inbox()
    second = make_mqtt(broker.url, client_id=client_id, persistent_session=persistent, protocol=protocol)
    second.subscribe("pca/session/#", inbox)
    second.connect(timeout=10)
    publisher.publish("pca/session/end", b"end")
    assert inbox.wait_for_payload(b"end", 10)
    expected = [f"while away {i}".encode() for i in range(5)] if persistent else []
    assert inbox.payloads == [*expected, b"end"]
