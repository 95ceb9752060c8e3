"""The fluentd log publisher against real Forward receivers: acknowledgements, outages, failover, TLS, the
handshake, tags and options. The contract itself is in test_fluentd_conformance.py."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from pca_fluentd import FluentdLogPublisher

from pca_core.api import ConfigError, ConfigErrors, LogPublishError, LogRecord, PublisherConfig
from pca_core.stratos.payload import Identity
from pca_core.telemetry.records import RecordSink
from pca_core.telemetry.streams import core_streams, log_fields
from pca_core.telemetry.tailer import LogTailer
from pca_core.testing import build_plugin
from tests.support.fluentd_records import SHARED_KEY, USERS
from tests.support.forward import ForwardReceiver
from tests.support.waiting import wait_until

IDENTITY = Identity(application_id="app-1", service_name="php", cluster_id="php.php.domain",
                    tenant_id="-1234", multitenant=False, ports=(), member_id="php.member-1",
                    cluster_instance_id="cluster-1-instance-1", network_partition_id="network-partition-1",
                    partition_id="partition-1")
AT = 1_700_000_000.25
MARGIN = 5.0  # how late past its timeout a call may return on a loaded machine


@pytest.fixture
def make_publisher() -> Iterator:
    """``make_publisher(*receivers, publish_timeout=5, **options)``: a fluentd publisher pointed at the
    receivers, built through its checks as the agent builds it and opened with the core's streams."""
    made: list[FluentdLogPublisher] = []

    def make(*receivers: ForwardReceiver, publish_timeout: float = 5.0, open_streams: bool = True,
             **options) -> FluentdLogPublisher:
        options = {"servers": [r.url for r in receivers], "timeout": 5.0, **options}
        config = PublisherConfig(plugin="fluentd", options=options, publish_timeout=publish_timeout)
        publisher = build_plugin(FluentdLogPublisher, config, key="publishers[0]")
        made.append(publisher)
        if open_streams:
            publisher.open(core_streams(IDENTITY))
        return publisher

    yield make
    for publisher in made:
        publisher.close(2.0)


def line(n: int) -> LogRecord:
    return LogRecord("logs", AT + n / 1000, {"line": f"line {n}", "path": "/var/log/app.log",
                                             "member_id": IDENTITY.member_id,
                                             "cluster_id": IDENTITY.cluster_id})


def health(n: int, value: float = 42.5) -> LogRecord:
    return LogRecord("health", AT + n / 1000, {"name": "load_average", "value": value,
                                               "member_id": IDENTITY.member_id,
                                               "cluster_id": IDENTITY.cluster_id})


def lines(forward: ForwardReceiver) -> list[str]:
    return [event.record["line"] for event in forward.events if "line" in event.record]


def failed(call) -> tuple[LogPublishError, float]:
    """What ``call`` raised, and how long it took."""
    started = time.monotonic()
    with pytest.raises(LogPublishError) as raised:
        call()
    return raised.value, time.monotonic() - started


# -- delivery ---------------------------------------------------------------------------------------------


def test_a_batch_is_acknowledged_chunk_by_chunk_and_arrives_as_sent(forward, make_publisher):
    publisher = make_publisher(forward)
    batch = [line(0), line(1), health(2), line(3)]  # three runs of one tag: three chunks
    assert publisher.publish(batch) == 4
    assert forward.count == 4 and forward.acks == 3  # counted only once acknowledged, so already stored
    events = forward.events
    assert [e.tag for e in events] == ["pca.logs", "pca.logs", "pca.health", "pca.logs"]
    assert [e.record for e in events] == [dict(r.fields) for r in batch]
    assert [e.time for e in events] == pytest.approx([r.timestamp for r in batch], abs=1e-6)
    assert all(e.mode == "packed" and e.event_time for e in events)
    assert forward.errors == []


def test_the_connection_is_kept_between_batches(forward, make_publisher):
    publisher = make_publisher(forward)
    for n in range(3):
        assert publisher.publish([line(n)]) == 1
    assert forward.connections == 1 and lines(forward) == ["line 0", "line 1", "line 2"]


def test_the_publisher_has_no_thread_of_its_own(forward, make_publisher):
    threads = set(threading.enumerate())
    publisher = make_publisher(forward)
    assert publisher.publish([line(n) for n in range(50)]) == 50
    publisher.close(2.0)
    assert set(threading.enumerate()) == threads


def test_a_withheld_ack_fails_the_publish_in_time_and_the_records_are_offered_again(forward, make_publisher):
    publisher = make_publisher(forward)
    forward.withhold_acks = True
    batch = [line(0), line(1)]
    error, took = failed(lambda: publisher.publish(batch, timeout=1.0))
    assert took < 1.0 + MARGIN
    assert forward.url in str(error) and "acknowledgement" in str(error)
    assert forward.count == 0  # read, neither stored nor acknowledged: nothing was counted either

    forward.withhold_acks = False
    assert publisher.publish(batch) == 2  # the core offers them again
    assert lines(forward) == ["line 0", "line 1"]
    assert forward.connections == 2  # the connection whose ack never came was dropped, not reused


def test_the_publish_timeout_setting_bounds_a_withheld_ack(forward, make_publisher):
    publisher = make_publisher(forward, publish_timeout=1.0)
    forward.withhold_acks = True
    _error, took = failed(lambda: publisher.publish([line(0)]))
    assert took < 1.0 + MARGIN


def test_a_receiver_dying_mid_batch_counts_nothing_it_did_not_store_and_the_retry_delivers(
        forward, make_publisher):
    publisher = make_publisher(forward)
    batch = [line(0), health(1), line(2)]
    forward.drop_next_chunks(1)  # the first chunk read aborts the connection: the receiver dies
    with pytest.raises(LogPublishError, match=r"closed the connection|broke"):
        publisher.publish(batch)
    assert forward.count == 0
    assert publisher.publish(batch) == 3
    assert [e.record for e in forward.events] == [dict(r.fields) for r in batch]


def test_a_restarted_receiver_is_reconnected_to(forward, make_publisher):
    publisher = make_publisher(forward)
    assert publisher.publish([line(0)]) == 1
    forward.restart()  # the connection the publisher holds is gone
    assert publisher.publish([line(1)]) == 1  # found closed before sending, and opened again
    assert lines(forward) == ["line 0", "line 1"] and forward.connections == 2


def test_publish_while_the_receiver_is_down_names_it_and_what_to_check(forward, make_publisher):
    publisher = make_publisher(forward)
    forward.stop()
    error, took = failed(lambda: publisher.publish([line(0)], timeout=2.0))
    assert took < 2.0 + MARGIN
    assert str(error) == (f"fluentd: {forward.url} does not answer (Connection refused); check the server "
                          f"and options.servers")


# -- several servers --------------------------------------------------------------------------------------


def test_a_batch_that_finds_its_server_down_goes_to_the_next_which_is_then_kept(
        forward, second_forward, make_publisher):
    publisher = make_publisher(forward, second_forward)
    assert publisher.publish([line(0)]) == 1
    forward.stop()
    assert publisher.publish([line(1)]) == 1  # the same call, to the second server
    forward.start()
    assert publisher.publish([line(2)]) == 1  # the second is used until it fails
    assert lines(forward) == ["line 0"]
    assert lines(second_forward) == ["line 1", "line 2"]
    second_forward.stop()
    assert publisher.publish([line(3)]) == 1
    assert lines(forward) == ["line 0", "line 3"]


def test_a_first_server_that_never_answered_is_passed_over(forward, make_publisher):
    down = ForwardReceiver()
    down.start()
    down.stop()  # a port of its own, now closed
    publisher = make_publisher(down, forward)
    assert publisher.publish([line(0), line(1)]) == 2
    assert lines(forward) == ["line 0", "line 1"]


def test_a_server_dying_mid_batch_leaves_the_rest_to_the_next(forward, second_forward, make_publisher):
    publisher = make_publisher(forward, second_forward)
    forward.drop_next_chunks(1)
    batch = [line(0), health(1), line(2)]
    assert publisher.publish(batch) == 3
    assert forward.count == 0
    assert [e.record for e in second_forward.events] == [dict(r.fields) for r in batch]


def test_with_every_server_down_the_error_names_each(forward, second_forward, make_publisher):
    publisher = make_publisher(forward, second_forward)
    forward.stop()
    second_forward.stop()
    error, took = failed(lambda: publisher.publish([line(0)], timeout=2.0))
    assert took < 2.0 + MARGIN
    assert forward.url in str(error) and second_forward.url in str(error) and "\n" not in str(error)


# -- TLS --------------------------------------------------------------------------------------------------


def test_tls_with_the_ca_that_signed_the_server_certificate(tls_forward, test_ca, make_publisher):
    publisher = make_publisher(tls_forward, tls=True, ca_file=str(test_ca.ca_file))
    assert publisher.publish([line(0)]) == 1
    assert lines(tls_forward) == ["line 0"]


def test_tls_refuses_a_certificate_it_does_not_trust(tls_forward, make_publisher):
    publisher = make_publisher(tls_forward, tls=True)  # the system's CAs never signed the test CA
    error, _took = failed(lambda: publisher.publish([line(0)], timeout=5.0))
    assert str(error).startswith(f"fluentd: the certificate of {tls_forward.url} is not trusted")
    assert "options.ca_file" in str(error) and "options.verify = false" in str(error)
    assert tls_forward.count == 0


def test_tls_refuses_a_certificate_for_another_name(test_ca, make_publisher):
    elsewhere = test_ca.issue("elsewhere", dns=("elsewhere.example",), ips=())
    with ForwardReceiver(cert=elsewhere) as forward:
        publisher = make_publisher(forward, tls=True, ca_file=str(test_ca.ca_file))
        error, _took = failed(lambda: publisher.publish([line(0)], timeout=5.0))
        assert "is not for that name" in str(error) and forward.count == 0


def test_tls_without_verification_connects_and_warns_once(tls_forward, make_publisher, caplog):
    with caplog.at_level(logging.WARNING, logger="pca_fluentd"):
        publisher = make_publisher(tls_forward, tls=True, verify=False)
        assert publisher.publish([line(0)]) == 1
        assert publisher.publish([line(1)]) == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "pca_fluentd"]
    assert len(warnings) == 1 and "certificates and host names are NOT checked" in warnings[0]
    assert lines(tls_forward) == ["line 0", "line 1"]


def test_plain_text_to_a_tls_server_fails_in_time(tls_forward, make_publisher):
    publisher = make_publisher(tls_forward)
    _error, took = failed(lambda: publisher.publish([line(0)], timeout=2.0))
    assert took < 2.0 + MARGIN and tls_forward.count == 0


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path, make_publisher, forward):
    with pytest.raises(ConfigError, match=r"options\.ca_file"):
        make_publisher(forward, tls=True, ca_file=str(tmp_path / "missing.pem"))


# -- the handshake ----------------------------------------------------------------------------------------


def test_the_shared_key_handshake(keyed_forward, make_publisher):
    publisher = make_publisher(keyed_forward, shared_key=SHARED_KEY, self_hostname="member-1.example")
    assert publisher.publish([line(0)]) == 1
    assert keyed_forward.handshakes == [("member-1.example", None, True)]
    assert lines(keyed_forward) == ["line 0"] and keyed_forward.errors == []


def test_a_wrong_shared_key_is_refused_with_what_to_check_and_no_secret(keyed_forward, make_publisher):
    publisher = make_publisher(keyed_forward, shared_key="not-the-key-0b9d")
    error, _took = failed(lambda: publisher.publish([line(0)]))
    message = str(error)
    assert message == (f"fluentd: {keyed_forward.url}: it refused the login (shared_key mismatch); check "
                       f"options.shared_key and options.self_hostname")
    assert "not-the-key-0b9d" not in message and SHARED_KEY not in message
    assert keyed_forward.count == 0


def test_a_server_that_wants_the_handshake_says_to_set_a_shared_key(keyed_forward, make_publisher):
    publisher = make_publisher(keyed_forward)
    error, _took = failed(lambda: publisher.publish([line(0)]))
    assert "requires the shared-key handshake" in str(error) and "options.shared_key" in str(error)
    assert keyed_forward.count == 0


def test_a_shared_key_with_a_server_that_asks_for_none_fails_in_time(forward, make_publisher):
    publisher = make_publisher(forward, shared_key=SHARED_KEY, timeout=1.0)
    error, took = failed(lambda: publisher.publish([line(0)]))
    assert took < 1.0 + MARGIN
    assert "HELO" in str(error) and "<security>" in str(error) and SHARED_KEY not in str(error)
    assert forward.count == 0  # nothing is sent to a server that did not authenticate itself


def test_a_user_login(login_forward, make_publisher):
    (user, password), = USERS.items()
    publisher = make_publisher(login_forward, shared_key=SHARED_KEY, username=user, password=password,
                               self_hostname="member-1.example")
    assert publisher.publish([line(0)]) == 1
    assert login_forward.handshakes == [("member-1.example", user, True)]


def test_a_wrong_password_is_refused_with_what_to_check_and_no_secret(login_forward, make_publisher):
    (user, _password), = USERS.items()
    publisher = make_publisher(login_forward, shared_key=SHARED_KEY, username=user, password="wrong-3c1a")
    error, _took = failed(lambda: publisher.publish([line(0)]))
    message = str(error)
    assert "username/password mismatch" in message
    assert "options.username and options.password" in message
    assert "wrong-3c1a" not in message and SHARED_KEY not in message
    assert login_forward.count == 0


def test_a_server_that_wants_a_login_says_so(login_forward, make_publisher):
    publisher = make_publisher(login_forward, shared_key=SHARED_KEY)
    error, _took = failed(lambda: publisher.publish([line(0)]))
    assert "requires a user login; set options.username and options.password" in str(error)


def test_a_server_that_does_not_know_the_shared_key_is_not_sent_to(make_publisher):
    """A PONG whose digest is wrong: the server accepted, but could not prove it knows the key."""
    received: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        impostor = threading.Thread(target=_impostor, args=(listener, received), daemon=True)
        impostor.start()
        host, port = listener.getsockname()
        config = PublisherConfig(plugin="fluentd", options={"servers": [f"{host}:{port}"],
                                                            "shared_key": SHARED_KEY, "timeout": 5.0})
        publisher = build_plugin(FluentdLogPublisher, config, key="publishers[0]")
        publisher.open(core_streams(IDENTITY))
        error, _took = failed(lambda: publisher.publish([line(0)]))
        publisher.close()
        impostor.join(10)
    assert "does not prove it knows the shared key" in str(error)
    assert [message[0] for message in received] == ["PING"]  # and nothing after it


def _impostor(listener: socket.socket, received: list[object]) -> None:
    """Answers one connection's handshake with a PONG that accepts and carries a wrong digest."""
    connection, _address = listener.accept()
    with connection:
        connection.sendall(msgpack.packb(["HELO", {"nonce": b"n" * 16, "auth": b"", "keepalive": True}]))
        unpacker = msgpack.Unpacker(raw=False)
        while data := connection.recv(65536):
            unpacker.feed(data)
            for message in unpacker:
                received.append(message)
                if message[0] == "PING":
                    connection.sendall(msgpack.packb(["PONG", True, "", "impostor", "0" * 128]))


# -- options ----------------------------------------------------------------------------------------------


def test_gzip_sends_compressed_chunks(forward, make_publisher):
    publisher = make_publisher(forward, compress="gzip")
    batch = [line(n) for n in range(20)]
    assert publisher.publish(batch) == 20
    assert all(e.mode == "compressed" for e in forward.events)
    assert [e.record for e in forward.events] == [dict(r.fields) for r in batch]


def test_tags_per_stream_with_the_stream_properties(forward, make_publisher):
    publisher = make_publisher(forward, tag="app.{service_name}.{stream}",
                               tags={"health": "metrics.{cluster_id}.{member_id}"})
    assert publisher.publish([line(0), health(1)]) == 2
    assert [e.tag for e in forward.events] == ["app.php.logs", "metrics.php.php.domain.php.member-1"]


def test_a_tag_placeholder_the_stream_does_not_have_fails_open_naming_it(forward, make_publisher):
    publisher = make_publisher(forward, tag="pca.{zone}.{stream}", open_streams=False)
    with pytest.raises(LogPublishError) as raised:
        publisher.open(core_streams(IDENTITY))
    message = str(raised.value)
    assert "options.tag" in message and "'zone'" in message
    assert "member_id" in message and "cluster_id" in message and "stream" in message


def test_time_as_integer_sends_whole_seconds(forward, make_publisher):
    publisher = make_publisher(forward, time_as_integer=True)
    assert publisher.publish([line(0)]) == 1
    (event,) = forward.events
    assert event.time == int(AT) and not event.event_time


def test_without_require_ack_a_batch_counts_once_written_and_a_warning_says_so(
        forward, make_publisher, caplog):
    with caplog.at_level(logging.WARNING, logger="pca_fluentd"):
        publisher = make_publisher(forward, require_ack=False)
    assert [r.getMessage() for r in caplog.records if "at most once" in r.getMessage()]
    assert publisher.publish([line(0), health(1)]) == 2
    assert forward.wait_for_count(2)
    assert forward.acks == 0 and forward.errors == []


@pytest.mark.parametrize(("options", "key", "expected"), [
    ({"servers": ["fluentd.example"]}, "options.servers[0]", "host:port"),
    ({"servers": ["fluentd.example:24224", "fluentd.example:99999"]}, "options.servers[1]", "host:port"),
    ({"servers": []}, "options.servers", "at least one server"),
    ({"compress": "zstd"}, "options.compress", "one of 'none', 'gzip'"),
    ({"tag": "pca.{stream"}, "options.tag", "a tag template"),
    ({"tag": "pca.{stream:>10}"}, "options.tag", "a tag template"),
    ({"tags": {"logs": "{0}"}}, "options.tags.logs", "a tag template"),
    ({"tags": {"metrics": "pca.metrics"}}, "options.tags.metrics", "a stream this publisher receives"),
    ({"timeout": 0}, "options.timeout", "more than 0"),
    ({"ca_file": "/etc/ssl/ca.pem"}, "options.ca_file", "options.tls = true"),
    ({"tls": True, "key_file": "/etc/pca/client.key"}, "options.key_file", "options.cert_file"),
    ({"username": "pca", "password": "x", "shared_key": "k"}, None, None),
    ({"username": "pca", "shared_key": "k"}, "options.password", "together"),
    ({"username": "pca", "password": "x"}, "options.shared_key", "handshake"),
    ({"shared_key": ""}, "options.shared_key", "not empty"),
])
def test_configuration_problems_name_the_key(options, key, expected):
    config = PublisherConfig(plugin="fluentd", options=options)
    if key is None:
        build_plugin(FluentdLogPublisher, config, key="publishers[0]")
        return
    with pytest.raises(ConfigErrors) as raised:
        build_plugin(FluentdLogPublisher, config, key="publishers[0]")
    found = {error.key: error.expected for error in raised.value.errors}
    assert f"publishers[0].{key}" in found, found
    assert expected in found[f"publishers[0].{key}"]


def test_secrets_stay_out_of_what_is_printed():
    config = PublisherConfig(plugin="fluentd", options={"shared_key": SHARED_KEY, "username": "pca",
                                                        "password": "the-password"})
    publisher = build_plugin(FluentdLogPublisher, config, key="publishers[0]")
    # config.options is the core's raw table, masked where the core prints it; these are the plugin's own
    shown = f"{publisher.options!r} {publisher.options} {publisher._dialer!r}"
    assert SHARED_KEY not in shown and "the-password" not in shown


# -- end to end -------------------------------------------------------------------------------------------


def test_tailed_lines_all_arrive_across_a_receiver_restart(tmp_path: Path, forward, scheduler):
    """The tailer and the record sink, as the agent runs them: every line at least once, in order."""
    config = PublisherConfig(plugin="fluentd", streams=("logs",), batch_size=50, flush_interval=0.05,
                             publish_timeout=2.0, options={"servers": [forward.url], "timeout": 2.0})
    publisher = build_plugin(FluentdLogPublisher, config, key="publishers[0]")
    sink = RecordSink([publisher], scheduler, streams=core_streams(IDENTITY))
    log = tmp_path / "app.log"
    log.touch()
    tailer = LogTailer([str(log)], sink, position_file=tmp_path / "positions.json",
                       fields=log_fields(IDENTITY))
    sink.start()
    tailer.start(scheduler, interval=0.05, watch=False)
    written: list[str] = []

    def write(first: int, last: int) -> None:
        with log.open("a", encoding="utf-8") as handle:
            for n in range(first, last):
                handle.write(f"line {n}\n")
                written.append(f"line {n}")

    try:
        write(0, 300)
        assert forward.wait_for_count(100, timeout=30)
        forward.stop()  # mid-stream: some of the first lines are still on their way
        write(300, 600)
        forward.start()
        write(600, 900)
        assert wait_until(lambda: set(written) <= set(lines(forward)), timeout=60, interval=0.05), (
            f"{len(set(written) - set(lines(forward)))} lines never arrived")
    finally:
        tailer.close()
        sink.close(10)
    got = lines(forward)
    assert list(dict.fromkeys(got)) == written  # the first arrival of each, in the order written
    assert {e.tag for e in forward.events} == {"pca.logs"}
    assert forward.errors == []
