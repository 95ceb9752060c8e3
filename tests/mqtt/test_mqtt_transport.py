"""The mqtt transport against real Mosquitto brokers: addresses, TLS, credentials, failover, sessions."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from importlib.metadata import entry_points

import pytest
from pca_mqtt import MqttTransport

from pca_core import (
    AuthenticationError,
    ConfigError,
    ConnectionFailed,
    ConnectionState,
    PublishTimeout,
    QoS,
    Secret,
    TlsConfig,
    TransportConfig,
    TransportError,
)
from pca_core.testing import Inbox, StateLog, build_plugin, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

S = ConnectionState
PASSWORD = "Sup3r-s3cret-pw"


def roundtrip(transport, topic="pca/test/x", payload=None) -> bytes:
    """Subscribes, publishes and waits for the message to come back through the broker."""
    payload = payload or uuid.uuid4().bytes
    inbox = Inbox()
    transport.subscribe(topic, inbox)
    transport.publish(topic, payload)
    assert inbox.wait_for_payload(payload, 10), f"{payload!r} did not come back"
    return payload


def pca_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pca-mqtt" and t.is_alive()]


# -- addresses ------------------------------------------------------------------------------------------


def test_the_entry_point_names_the_transport():
    (entry_point,) = entry_points(group="pca.transports", name="mqtt")
    assert entry_point.load() is MqttTransport


def test_legacy_host_port_addresses_as_mb_urls_gives_them(broker, make_mqtt):
    transport = make_mqtt(broker.address)
    transport.connect(timeout=10)
    roundtrip(transport)


def test_failover_skips_a_dead_broker_at_connect(broker, make_mqtt):
    transport = make_mqtt(broker.dead_url, broker.url)
    transport.connect(timeout=10)
    roundtrip(transport)


def test_connect_names_every_url_tried_with_the_password_masked(broker, make_mqtt):
    dead = broker.dead_url.replace("mqtt://", f"mqtt://agent:{PASSWORD}@")
    other = f"127.0.0.1:{free_port()}"  # a second port nobody listens on
    transport = make_mqtt(dead, other)
    with pytest.raises(ConnectionFailed) as info:
        transport.connect(timeout=10)
    text = str(info.value)
    assert broker.dead_url.replace("mqtt://", "mqtt://agent:***@") in text
    assert f"mqtt://{other}" in text and "connection refused" in text
    assert PASSWORD not in text + repr(info.value)


def test_connect_after_a_failed_connect_works_once_the_broker_is_up(tmp_path, make_mqtt):
    broker = Mosquitto(tmp_path / "late")
    transport = make_mqtt(broker.url)
    with pytest.raises(ConnectionFailed):
        transport.connect(timeout=5)
    assert len(pca_threads()) <= 1  # an idle thread, not one per attempt
    broker.start()
    try:
        transport.connect(timeout=10)
        roundtrip(transport)
    finally:
        broker.stop()


@pytest.mark.parametrize("urls, expected", [
    ((), "no broker address"),
    (("amqp://host:5672",), "unknown scheme"),
    (("mqtt://host:1883/path",), "no path"),
    (("mqtt://a:1883", "mqtts://b:8883"), "mixes TLS"),
])
def test_unusable_urls_are_a_config_error(make_mqtt, urls, expected):
    with pytest.raises(ConfigError, match=expected):
        make_mqtt(*urls)


def test_tls_settings_with_a_plain_url_are_a_config_error(make_mqtt):
    with pytest.raises(ConfigError, match=r"\[transport.tls\] is set"):
        make_mqtt("mqtt://localhost:1883", tls=TlsConfig())


def test_a_persistent_session_needs_a_client_id(make_mqtt):
    with pytest.raises(ConfigError, match="client_id"):
        make_mqtt("mqtt://localhost:1883", persistent_session=True)


@pytest.mark.parametrize("options, expected", [
    ({"keepalive": 0}, "transport.options.keepalive"),
    ({"session_expiry": -1}, "transport.options.session_expiry"),
    ({"protocol": "3"}, "transport.options.protocol"),
    ({"keepalives": 10}, "unknown key"),
    ({"reconnect_delays": [1, 2]}, "unknown key"),  # the 1.0 options; now transport.reconnect_delay
])
def test_options_are_validated_with_the_key_named(options, expected):
    config = TransportConfig(plugin="mqtt", urls=("localhost:1883",), options=options)
    with pytest.raises(ConfigError, match=expected) as info:
        build_plugin(MqttTransport, config, source="agent.toml", key="transport")
    assert str(info.value).startswith("agent.toml: transport.options")


@pytest.mark.parametrize("settings, expected", [
    ({"reconnect_delay": 0}, "transport.reconnect_delay: a number of seconds greater than 0"),
    ({"reconnect_delay": 5, "max_reconnect_delay": 1}, "transport.max_reconnect_delay: a number of seconds "
                                                       "not below reconnect_delay"),
])
def test_the_reconnect_delays_are_checked(settings, expected):
    config = TransportConfig(plugin="mqtt", urls=("localhost:1883",), **settings)
    with pytest.raises(ConfigError, match=expected):
        build_plugin(MqttTransport, config, source="agent.toml", key="transport")


# -- TLS ------------------------------------------------------------------------------------------------


def test_mqtts_with_the_test_ca(tls_broker, make_mqtt):
    assert tls_broker.url.startswith("mqtts://")
    transport = make_mqtt(tls_broker.url, tls=TlsConfig(ca_file=tls_broker.ca_file))
    transport.connect(timeout=10)
    roundtrip(transport)


def test_legacy_host_port_uses_tls_when_tls_is_configured(tls_broker, make_mqtt):
    transport = make_mqtt(tls_broker.address, tls=TlsConfig(ca_file=tls_broker.ca_file))
    transport.connect(timeout=10)
    roundtrip(transport)


def test_an_unknown_ca_is_refused(tls_broker, make_mqtt):
    transport = make_mqtt(tls_broker.url)  # the system CAs do not know the test CA
    with pytest.raises(ConnectionFailed, match="certificate"):
        transport.connect(timeout=10)


@pytest.fixture
def misnamed_tls_broker(tmp_path, test_ca):
    """A TLS broker whose certificate names another host (its CA is trusted)."""
    cert = test_ca.issue("elsewhere", dns=("elsewhere.example",), ips=())
    broker = Mosquitto(tmp_path / "misnamed", tls=cert, ca_file=test_ca.ca_file)
    broker.start()
    yield broker
    broker.stop()


def test_host_name_verification_is_on_by_default(misnamed_tls_broker, make_mqtt):
    transport = make_mqtt(misnamed_tls_broker.url, tls=TlsConfig(ca_file=misnamed_tls_broker.ca_file))
    with pytest.raises(ConnectionFailed, match="certificate") as info:
        transport.connect(timeout=10)
    assert "127.0.0.1" in str(info.value)


def test_verify_false_connects_anyway_and_says_so(misnamed_tls_broker, make_mqtt, caplog):
    caplog.set_level(logging.WARNING, logger="pca_mqtt")
    transport = make_mqtt(misnamed_tls_broker.url, tls=TlsConfig(verify=False))
    assert "NOT checked" in caplog.text
    transport.connect(timeout=10)
    roundtrip(transport)


@pytest.fixture
def client_cert_broker(tmp_path, test_ca, server_cert):
    broker = Mosquitto(tmp_path / "mutual", tls=server_cert, ca_file=test_ca.ca_file,
                       require_client_cert=True)
    broker.start()
    yield broker
    broker.stop()


def test_client_certificates(client_cert_broker, test_ca, make_mqtt):
    without = make_mqtt(client_cert_broker.url, tls=TlsConfig(ca_file=client_cert_broker.ca_file))
    with pytest.raises(ConnectionFailed):
        without.connect(timeout=10)
    pair = test_ca.issue("agent", dns=(), ips=(), client=True)
    tls = TlsConfig(ca_file=client_cert_broker.ca_file, cert_file=str(pair.cert_file),
                    key_file=str(pair.key_file))
    transport = make_mqtt(client_cert_broker.url, tls=tls)
    transport.connect(timeout=10)
    roundtrip(transport)


# -- credentials ----------------------------------------------------------------------------------------


@pytest.fixture
def auth_broker(tmp_path):
    broker = Mosquitto(tmp_path / "auth", users={"agent": PASSWORD})
    broker.start()
    yield broker
    broker.stop()


def test_good_credentials_from_the_config_or_the_url(auth_broker, make_mqtt):
    transport = make_mqtt(auth_broker.url, username="agent", password=Secret(PASSWORD))
    transport.connect(timeout=10)
    roundtrip(transport)
    in_url = make_mqtt(auth_broker.url.replace("mqtt://", f"mqtt://agent:{PASSWORD}@"))
    in_url.connect(timeout=10)
    roundtrip(in_url)


def test_bad_credentials_raise_authentication_error_and_never_show_the_password(auth_broker, make_mqtt,
                                                                                 caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-" + PASSWORD
    transport = make_mqtt(auth_broker.url, username="agent", password=Secret(wrong))
    with pytest.raises(AuthenticationError) as info:
        transport.connect(timeout=10)
    assert "refused the credentials of user 'agent'" in str(info.value)
    assert auth_broker.url in str(info.value)
    in_url = make_mqtt(auth_broker.url.replace("mqtt://", f"mqtt://agent:{wrong}@"))
    with pytest.raises(AuthenticationError) as info2:
        in_url.connect(timeout=10)
    good = make_mqtt(auth_broker.url.replace("mqtt://", f"mqtt://agent:{PASSWORD}@"))
    good.connect(timeout=10)
    roundtrip(good)
    shown = caplog.text + str(info.value) + repr(info.value) + str(info2.value) + repr(info2.value)
    assert wrong not in shown and PASSWORD not in shown
    assert "agent:***@" in str(info2.value)  # the error names the URL's user; the log lines show no user
    assert f"connected to {auth_broker.url} " in caplog.text


def test_credentials_refused_on_reconnect_are_logged_once_and_retried_slowly(auth_broker, make_mqtt,
                                                                               caplog):
    caplog.set_level(logging.INFO, logger="pca_mqtt")
    # Refused credentials wait between half of max_reconnect_delay and all of it: 1 to 2 s here.
    transport = make_mqtt(auth_broker.url, username="agent", password=Secret(PASSWORD),
                          reconnect_delay=0.05, max_reconnect_delay=2.0)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect(timeout=10)
    auth_broker.set_users({"agent": "changed-" + PASSWORD})
    auth_broker.restart()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, timeout=10)

    def refusals():
        return [r for r in caplog.records if "refused the credentials" in r.getMessage()]

    assert wait_until(lambda: refusals(), timeout=10)
    start = auth_broker.connect_attempts()
    # A hot loop, or the short delays, would make dozens of attempts in this window; refused credentials
    # wait at least 1 s each, which makes three or four.
    assert not wait_until(lambda: auth_broker.connect_attempts() - start > 6, timeout=3.0)
    assert wait_until(lambda: auth_broker.connect_attempts() - start >= 2, timeout=10)  # it keeps trying
    assert len(refusals()) == 1 and refusals()[0].levelno == logging.ERROR
    auth_broker.set_users({"agent": PASSWORD})
    auth_broker.restart()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=10)
    roundtrip(transport)
    assert PASSWORD not in caplog.text


# -- connection life ------------------------------------------------------------------------------------


def test_one_thread_per_transport_whatever_the_broker_does(broker, make_mqtt):
    assert wait_until(lambda: not pca_threads(), 10)  # other tests' transports have finished
    baseline = threading.active_count()
    transport = make_mqtt(broker.url)
    states = StateLog()
    transport.add_state_listener(states)
    assert threading.active_count() == baseline  # nothing runs before connect
    transport.connect(timeout=10)
    assert threading.active_count() == baseline + 1 and len(pca_threads()) == 1
    for i in range(3):
        broker.restart()
        assert states.wait_for(lambda s, n=i + 1: [x for x, _ in s].count(S.RECONNECTED) == n, timeout=10)
        assert threading.active_count() == baseline + 1
    for _ in range(20):
        transport.publish("pca/test/threads", b"x")
    assert threading.active_count() == baseline + 1
    transport.close(5)
    assert threading.active_count() == baseline


def test_state_changes_are_reported_in_order(broker, make_mqtt):
    transport = make_mqtt(broker.url)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect(timeout=10)
    broker.stop()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, timeout=10)
    lost_error = states.snapshot()[-1][1]
    assert isinstance(lost_error, ConnectionFailed) and broker.url in str(lost_error)
    broker.start()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=10)
    transport.close(5)
    transport.close(5)
    assert states.states == [S.CONNECTED, S.LOST, S.RECONNECTED, S.CLOSED]


def test_failover_to_the_next_broker_when_one_goes_away(tmp_path, make_mqtt):
    first, second = Mosquitto(tmp_path / "first"), Mosquitto(tmp_path / "second")
    first.start()
    second.start()
    try:
        transport = make_mqtt(first.url, second.url)
        states = StateLog()
        transport.add_state_listener(states)
        inbox = Inbox()
        transport.subscribe("pca/failover/#", inbox)
        transport.connect(timeout=10)
        first.stop()
        assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=10)
        # The subscription was restored on the second broker: a message published there arrives.
        publisher = make_mqtt(second.url)
        publisher.connect(timeout=10)
        publisher.publish("pca/failover/x", b"after failover")
        assert inbox.wait_for_payload(b"after failover", 10)
    finally:
        first.stop()
        second.stop()


def test_publish_while_disconnected_raises_at_once(broker, make_mqtt):
    transport = make_mqtt(broker.url, reconnect_delay=30.0, max_reconnect_delay=30.0)
    with pytest.raises(ConnectionFailed):
        transport.publish("pca/test/x", b"before connect")
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect(timeout=10)
    broker.stop()
    assert states.wait_for_sequence(S.LOST, timeout=10)
    with pytest.raises(ConnectionFailed) as info:
        transport.publish("pca/test/x", b"while lost", timeout=30)
    assert isinstance(info.value, TransportError)
    transport.close(5)
    with pytest.raises(ConnectionFailed):
        transport.publish("pca/test/x", b"after close")


def test_publish_without_puback_times_out(broker, make_mqtt):
    transport = make_mqtt(broker.url)
    transport.connect(timeout=10)
    broker.pause()
    try:
        with pytest.raises(PublishTimeout, match="did not acknowledge"):
            transport.publish("pca/test/x", b"unanswered", timeout=0.5)
    finally:
        broker.resume()


def test_qos0_publish_and_subscribe(broker, make_mqtt):
    transport = make_mqtt(broker.url)
    transport.connect(timeout=10)
    inbox = Inbox()
    transport.subscribe("pca/qos0/#", inbox, qos=QoS.AT_MOST_ONCE)
    transport.publish("pca/qos0/x", b"fire and forget", qos=QoS.AT_MOST_ONCE)
    assert inbox.wait_for_payload(b"fire and forget", 10)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])  # over 5 Mosquitto sends one copy per subscription
def test_overlapping_subscriptions_each_get_the_message_once(broker, make_mqtt, protocol):
    transport = make_mqtt(broker.url, protocol=protocol)
    transport.connect(timeout=10)
    everything, one_level, exact = Inbox(), Inbox(), Inbox()
    transport.subscribe("pca/overlap/#", everything)
    transport.subscribe("pca/overlap/+", one_level)
    transport.subscribe("pca/overlap/a", exact)
    transport.publish("pca/overlap/a", b"a")
    transport.publish("pca/overlap/b/c", b"end")
    assert everything.wait_for_payload(b"end", 10)
    assert everything.payloads == [b"a", b"end"]
    assert one_level.payloads == [b"a"]
    assert exact.payloads == [b"a"]


# -- timeouts -------------------------------------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never says a word (no CONNACK)."""
    server = socket.create_server(("127.0.0.1", 0))
    yield f"mqtt://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def blackhole():
    """A TCP port whose accept queue is full, so that further connects hang in SYN retries."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        fillers.append(sock)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        hangs = probe.connect_ex(("127.0.0.1", port)) != 0
    except TimeoutError:
        hangs = True
    probe.close()
    assert hangs, "the kernel accepted more connections than expected; no blackhole here"
    yield f"mqtt://127.0.0.1:{port}"
    for sock in fillers:
        sock.close()
    server.close()


@pytest.mark.parametrize("hole", ["silent_server", "blackhole"])
def test_connect_and_close_honour_their_timeouts(request, hole, make_mqtt):
    url = request.getfixturevalue(hole)
    transport = make_mqtt(url, connect_timeout=60.0)
    start = time.monotonic()
    with pytest.raises(ConnectionFailed) as info:
        transport.connect(timeout=1.0)
    assert time.monotonic() - start < 30  # bounded by the 1 s asked, far from the 60 s per attempt
    assert url in str(info.value)
    start = time.monotonic()
    transport.close(1.0)
    assert time.monotonic() - start < 30


def test_a_broker_that_never_answers_leaves_connect_time_for_the_next(blackhole, broker, make_mqtt):
    transport = make_mqtt(blackhole, broker.url, connect_timeout=60.0)
    transport.connect(timeout=8)
    roundtrip(transport)


def test_no_connack_moves_on_to_the_next_broker(silent_server, broker, make_mqtt):
    transport = make_mqtt(silent_server, broker.url, connect_timeout=1.0)
    transport.connect(timeout=20)
    roundtrip(transport)


def test_a_handler_may_publish_at_qos1_on_the_network_thread(broker, make_mqtt):
    responder, requester = make_mqtt(broker.url), make_mqtt(broker.url)
    responder.connect(timeout=10)
    requester.connect(timeout=10)
    errors = []

    def reply(message):
        try:
            responder.publish("pca/reply", b"re:" + message.payload, qos=QoS.AT_LEAST_ONCE)
        except Exception as exc:
            errors.append(exc)

    responder.subscribe("pca/request", reply)
    replies = Inbox()
    requester.subscribe("pca/reply", replies)
    for i in range(3):
        requester.publish("pca/request", b"ping%d" % i)
    assert replies.wait_for(lambda m: len(m) == 3, 10), errors
    assert replies.payloads == [b"re:ping0", b"re:ping1", b"re:ping2"] and errors == []


def test_over_mqtt_5_the_broker_never_sends_a_message_over_max_message_size(broker, make_mqtt):
    transport = make_mqtt(broker.url, protocol="5", max_message_size=10_000)
    transport.connect(timeout=10)
    inbox = Inbox()
    transport.subscribe("pca/size/#", inbox)
    peer = make_mqtt(broker.url)
    peer.connect(timeout=10)
    peer.publish("pca/size/big", b"x" * 200_000)  # over the size and over the topic headroom
    peer.publish("pca/size/fits", b"x" * 10_000)
    assert inbox.wait_for_payload(b"x" * 10_000, 10)
    assert [message.topic for message in inbox.messages] == ["pca/size/fits"]
