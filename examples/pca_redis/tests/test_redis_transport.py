"""The Redis transport against real redis-server processes: what the conformance suite does not cover."""

import os
import signal
import threading
import time

import pytest
import redis
from pca_redis import RedisOptions, RedisTransport
from pca_redis._channels import RedisSubscription, redis_subscription

from pca_core import (
    AuthenticationError,
    ConfigError,
    ConnectionFailed,
    ConnectionState,
    Message,
    PublishTimeout,
    Secret,
    TransportConfig,
    TransportError,
)
from pca_core.testing import Inbox, StateLog, build_plugin, wait_until

WAIT = 10.0


def listener_threads(transport: RedisTransport) -> list[threading.Thread]:
    suffix = f"-{id(transport):x}"
    return [t for t in threading.enumerate()
            if t.name.startswith("pca-redis-listener") and t.name.endswith(suffix)]


# -- topic mapping ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "expected"), [
    ("a/b", RedisSubscription("subscribe", b"a/b")),
    ("a/*?[x]\\", RedisSubscription("subscribe", b"a/*?[x]\\")),  # a channel name, not a glob
    ("#", RedisSubscription("psubscribe", b"*")),
    ("a/#", RedisSubscription("psubscribe", b"a*")),
    ("a/+", RedisSubscription("psubscribe", b"a/*")),
    ("+/b/#", RedisSubscription("psubscribe", b"*/b*")),
    ("a*/[b]/?\\/+", RedisSubscription("psubscribe", b"a\\*/\\[b\\]/\\?\\\\/*")),
])
def test_patterns_map_to_channels_and_escaped_globs(pattern, expected):
    assert redis_subscription(pattern) == expected


# -- delivery -----------------------------------------------------------------------------------------

def test_round_trip_between_two_transports(broker, make_transport):
    sender, receiver = make_transport(broker.url), make_transport(broker.url)
    sender.connect()
    receiver.connect()
    inbox = Inbox()
    receiver.subscribe("instance/status/InstanceStartedEvent", inbox)
    sender.publish("instance/status/InstanceStartedEvent", b'{"memberId":"m1"}')
    assert inbox.wait_for_payload(b'{"memberId":"m1"}', WAIT) == Message(
        "instance/status/InstanceStartedEvent", b'{"memberId":"m1"}')


def test_globs_are_filtered_by_the_pattern_and_each_subscription_gets_a_message_once(broker, make_transport):
    transport = make_transport(broker.url)
    transport.connect()
    inboxes = {pattern: Inbox() for pattern in (
        "a/+", "a/#", "a/+/#", "a/b", "+/b", "x/[y]*?/+", "x/y*", "#")}
    for pattern, inbox in inboxes.items():
        transport.subscribe(pattern, inbox)
    # The same pattern twice: both handlers get each message.
    twin = Inbox()
    transport.subscribe("a/+", twin)
    topics = ["a", "a/b", "a/b/c", "ab", "z/b", "x/[y]*?/z", "x/yy/z", "x/y*", "x/yz", "end"]
    for topic in topics:
        transport.publish(topic, topic.encode())
    # One listener thread delivers in order: once "#" has the last message, every handler had its turn.
    assert inboxes["#"].wait_for_payload(b"end", WAIT)
    received = {pattern: [m.topic for m in inbox.messages] for pattern, inbox in inboxes.items()}
    assert received == {
        "a/+": ["a/b"],
        "a/#": ["a", "a/b", "a/b/c"],
        "a/+/#": ["a/b", "a/b/c"],
        "a/b": ["a/b"],
        "+/b": ["a/b", "z/b"],
        "x/[y]*?/+": ["x/[y]*?/z"],
        "x/y*": ["x/y*"],
        "#": topics,
    }
    assert [m.topic for m in twin.messages] == ["a/b"]


def test_payloads_are_bytes_kept_exactly(broker, make_transport):
    transport = make_transport(broker.url)
    transport.connect()
    inbox = Inbox()
    transport.subscribe("bin/#", inbox)
    payload = bytes(range(256)) * 1000
    transport.publish("bin/x", payload)
    transport.publish("bin/empty", b"")
    assert inbox.wait_for(lambda items: len(items) == 2, WAIT)
    assert inbox.payloads == [payload, b""]
    with pytest.raises(TypeError, match="bytes"):
        transport.publish("bin/x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topic"):
        transport.publish("bin/+", b"")
    with pytest.raises(ValueError, match="pattern"):
        transport.subscribe("bin/#/x", inbox)


def test_a_failing_handler_does_not_stop_delivery(broker, make_transport):
    transport = make_transport(broker.url)
    transport.connect()

    def broken(message: Message) -> None:
        raise RuntimeError("handler bug")

    inbox = Inbox()
    transport.subscribe("t", broken)
    transport.subscribe("t", inbox)
    transport.publish("t", b"1")
    transport.publish("t", b"2")
    assert inbox.wait_for(lambda items: len(items) == 2, WAIT)


def test_a_handler_may_subscribe_and_publish(broker, make_transport):
    transport = make_transport(broker.url)
    transport.connect()
    inbox = Inbox()

    def chain(message: Message) -> None:
        transport.subscribe("second", inbox)
        transport.publish("ack", b"from the handler")

    acks = Inbox()
    transport.subscribe("ack", acks)
    transport.subscribe("first", chain)
    transport.publish("first", b"")
    assert acks.wait_for_payload(b"from the handler", WAIT)
    transport.subscribe("second", Inbox())  # returns once "second" is confirmed
    transport.publish("second", b"x")
    assert inbox.wait_for_payload(b"x", WAIT)


def test_subscriptions_made_before_connect_take_effect_on_connect(broker, make_transport):
    sender, receiver = make_transport(broker.url), make_transport(broker.url)
    inbox = Inbox()
    receiver.subscribe("early/+", inbox)
    sender.connect()
    receiver.connect()
    sender.publish("early/1", b"kept")
    assert inbox.wait_for_payload(b"kept", WAIT)


def test_unsubscribe_tells_redis_once_nothing_uses_the_channel_and_a_reconnect_leaves_it_out(broker,
                                                                                             make_transport):
    transport = make_transport(broker.url)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect()
    server = redis.Redis(host="127.0.0.1", port=broker.port, protocol=2)

    def subscribers(channel: str) -> int:
        ((_, count),) = server.pubsub_numsub(channel)
        return count

    first, second = transport.subscribe("u/exact", Inbox()), transport.subscribe("u/exact", Inbox())
    glob = transport.subscribe("u/+", Inbox())
    transport.subscribe("kept", Inbox())
    assert (subscribers("u/exact"), server.pubsub_numpat(), subscribers("kept")) == (1, 1, 1)
    transport.unsubscribe(first)
    transport.unsubscribe(glob)
    transport.unsubscribe(glob)  # idempotent
    assert wait_until(lambda: server.pubsub_numpat() == 0, WAIT)
    assert subscribers("u/exact") == 1  # the listener sent what both changes called for: the glob only
    transport.unsubscribe(second)
    assert wait_until(lambda: subscribers("u/exact") == 0, WAIT)
    broker.restart()
    assert states.wait_for_sequence(ConnectionState.LOST, ConnectionState.RECONNECTED, timeout=WAIT)
    assert (subscribers("u/exact"), server.pubsub_numpat(), subscribers("kept")) == (0, 0, 1)
    server.close()


# -- connection ---------------------------------------------------------------------------------------

def test_connect_fails_over_to_the_next_url(broker, make_transport):
    transport = make_transport(broker.dead_url, broker.url)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect(timeout=5)
    assert states.states == [ConnectionState.CONNECTED]
    inbox = Inbox()
    transport.subscribe("f", inbox)
    transport.publish("f", b"over")
    assert inbox.wait_for_payload(b"over", WAIT)


def test_connect_to_dead_ports_fails_within_the_timeout(broker, make_transport):
    transport = make_transport(broker.dead_url, broker.dead_url)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="no Redis server answered"):
        transport.connect(timeout=2)
    assert time.monotonic() - started < 5
    with pytest.raises(TransportError, match="not connected"):
        transport.publish("a", b"")


def test_credentials(redis_server_factory, make_transport):
    server = redis_server_factory("auth", extra_args=["--requirepass", "s3cret"])
    with pytest.raises(AuthenticationError, match="refused"):
        make_transport(server.url).connect()
    with pytest.raises(AuthenticationError):
        make_transport(server.url, password=Secret("wrong")).connect()
    good = make_transport(server.url, password=Secret("s3cret"))
    good.connect()
    in_url = make_transport(server.url.replace("redis://", "redis://:s3cret@"))
    in_url.connect()
    inbox = Inbox()
    good.subscribe("p", inbox)
    in_url.publish("p", b"authenticated")
    assert inbox.wait_for_payload(b"authenticated", WAIT)


def test_bad_urls_are_configuration_errors(make_transport):
    with pytest.raises(ConfigError, match=r"transport\.urls\[1\]"):
        make_transport("redis://localhost:6379", "http://localhost:6379")
    with pytest.raises(ConfigError, match="rediss"):
        make_transport("redis://localhost:6379", tls={"ca_file": "/nonexistent"})


def test_options_are_checked_and_the_core_checks_the_reconnect_delays():
    config = TransportConfig(plugin="redis")
    assert RedisTransport.check_config(config, RedisOptions()) == []
    (issue,) = RedisTransport.check_config(config, RedisOptions(keepalive=0))
    assert issue.key == "options.keepalive"
    backwards = TransportConfig(plugin="redis", reconnect_delay=2, max_reconnect_delay=1)
    with pytest.raises(ConfigError, match=r"transport\.max_reconnect_delay"):
        build_plugin(RedisTransport, backwards, key="transport")


def test_the_options_of_0_1_are_refused_with_the_key_named():
    config = TransportConfig(plugin="redis", options={"reconnect_min_delay": 0.5})
    with pytest.raises(ConfigError, match=r"transport\.options.*reconnect_min_delay"):
        build_plugin(RedisTransport, config, key="transport")


def test_reconnects_after_a_restart_and_restores_every_subscription(broker, make_transport):
    receiver, sender = make_transport(broker.url), make_transport(broker.url)
    states = StateLog()
    receiver.add_state_listener(states)
    receiver.connect()
    sender.connect()
    exact, wild = Inbox(), Inbox()
    receiver.subscribe("r/1", exact)
    receiver.subscribe("r/+", wild)
    broker.restart()
    assert states.wait_for_sequence(ConnectionState.CONNECTED, ConnectionState.LOST,
                                    ConnectionState.RECONNECTED, timeout=WAIT)
    lost_error = states.snapshot()[1][1]
    assert isinstance(lost_error, ConnectionFailed)
    sender.publish("r/1", b"after restart")  # the sender's stale publisher connection is replaced
    assert exact.wait_for_payload(b"after restart", WAIT)
    assert wild.wait_for_payload(b"after restart", WAIT)
    assert len(listener_threads(receiver)) == 1


def test_fails_over_to_another_server_when_the_first_goes_away(redis_server_factory, make_transport):
    first, second = redis_server_factory("first"), redis_server_factory("second")
    transport = make_transport(first.url, second.url)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect()
    inbox = Inbox()
    transport.subscribe("fo/#", inbox)
    first.stop()
    assert states.wait_for_sequence(ConnectionState.LOST, ConnectionState.RECONNECTED, timeout=WAIT)
    transport.publish("fo/x", b"on the second server")
    assert inbox.wait_for_payload(b"on the second server", WAIT)


def test_publish_while_the_server_is_down_fails_promptly(broker, make_transport):
    transport = make_transport(broker.url, publish_timeout=5.0)
    transport.connect()
    broker.stop()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        transport.publish("down", b"")
    assert time.monotonic() - started < 5.0
    broker.start()
    transport.publish("down", b"back")  # the publisher reconnects on its own


def test_publish_times_out_on_a_hung_server_and_close_still_returns(broker, make_transport):
    transport = make_transport(broker.url)
    transport.connect()
    transport.publish("warm", b"")
    pid = broker.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(PublishTimeout):
            transport.publish("hung", b"", timeout=0.5)
        started = time.monotonic()
        transport.close(timeout=2.0)
        assert time.monotonic() - started < 3.0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert not listener_threads(transport)


def test_close_is_idempotent_and_ends_the_listener(broker, make_transport):
    transport = make_transport(broker.url)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect()
    assert len(listener_threads(transport)) == 1
    transport.close(2.0)
    transport.close(2.0)
    assert not listener_threads(transport)
    assert states.states == [ConnectionState.CONNECTED, ConnectionState.CLOSED]
    with pytest.raises(TransportError, match="after close"):
        transport.publish("a", b"")
    with pytest.raises(TransportError, match="after close"):
        transport.connect()


def test_close_returns_while_reconnecting_to_a_stopped_server(broker, make_transport):
    transport = make_transport(broker.url, reconnect_delay=5.0, max_reconnect_delay=5.0)
    states = StateLog()
    transport.add_state_listener(states)
    transport.connect()
    broker.stop()
    assert states.wait_for_sequence(ConnectionState.LOST, timeout=WAIT)
    started = time.monotonic()
    transport.close(2.0)
    assert time.monotonic() - started < 2.0
    assert not listener_threads(transport)
    assert states.states[-1] == ConnectionState.CLOSED


# -- TLS ----------------------------------------------------------------------------------------------

def test_tls_round_trip(tls_broker, make_transport):
    transport = make_transport(tls_broker.url, tls={"ca_file": tls_broker.ca_file})
    transport.connect()
    inbox = Inbox()
    transport.subscribe("secure/+", inbox)
    transport.publish("secure/x", b"over TLS")
    assert inbox.wait_for_payload(b"over TLS", WAIT)


def test_tls_refuses_a_server_it_cannot_verify(tls_broker, make_transport):
    with pytest.raises(ConnectionFailed):
        make_transport(tls_broker.url).connect(timeout=3)  # the test CA is not a system CA
    unverified = make_transport(tls_broker.url, tls={"verify": False})
    unverified.connect(timeout=3)
