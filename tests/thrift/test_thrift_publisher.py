"""The thrift log publisher against real databridge receivers: the Stratos streams, sessions, several
receivers, and what goes wrong. The contract itself is in test_thrift_conformance.py."""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
from collections.abc import Iterator

import pytest
from pca_thrift import ThriftLogPublisher

from pca_core.api import ConfigErrors, LogPublishError, LogRecord, PublisherConfig
from pca_core.stratos.payload import Identity
from pca_core.telemetry.streams import core_streams
from pca_core.testing import build_plugin
from tests.support.databridge import DatabridgeReceiver
from tests.support.waiting import wait_until

IDENTITY = Identity(application_id="app-1", service_name="php", cluster_id="php.php.domain",
                    tenant_id="-1234", multitenant=False, ports=(), member_id="php.member-1",
                    cluster_instance_id="cluster-1-instance-1", network_partition_id="network-partition-1",
                    partition_id="partition-1")
HEALTH_DEFINITION = (
    '{"name":"cartridge_agent_health_stats","version":"1.0.0","nickName":"agent health stats",'
    '"description":"agent health stats","payloadData":[{"name":"cluster_id", "type": "STRING"},'
    '{"name":"cluster_instance_id", "type": "STRING"},{"name":"network_partition_id", "type": "STRING"},'
    '{"name":"member_id", "type": "STRING"},{"name":"partition_id", "type": "STRING"},'
    '{"name":"health_description", "type": "STRING"},{"name":"value", "type": "DOUBLE"}]}')
FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.1, "timeout": 5.0}


@pytest.fixture
def make_publisher(test_ca) -> Iterator:
    """``make_publisher(*receivers, **options)``: a thrift publisher opened with the core's streams."""
    made: list[ThriftLogPublisher] = []

    def make(*receivers: DatabridgeReceiver, identity: Identity = IDENTITY, **options) -> ThriftLogPublisher:
        options = {"urls": [r.url for r in receivers], "username": "admin", "password": "admin",
                   "ca_file": str(test_ca.ca_file), **FAST, **options}
        config = PublisherConfig(plugin="thrift", options=options, publish_timeout=5.0)
        publisher = build_plugin(ThriftLogPublisher, config, key="publishers[0]")
        publisher.open(core_streams(identity))
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close(2.0)


@pytest.fixture
def second_databridge(server_cert) -> Iterator[DatabridgeReceiver]:
    with DatabridgeReceiver(server_cert) as receiver:
        yield receiver


def health(value: float, name: str = "memory_consumption", at: float = 1_450_000_000.0) -> LogRecord:
    ids = {"cluster_id": IDENTITY.cluster_id, "cluster_instance_id": IDENTITY.cluster_instance_id,
           "network_partition_id": IDENTITY.network_partition_id, "member_id": IDENTITY.member_id,
           "partition_id": IDENTITY.partition_id}
    return LogRecord("health", at, {"name": name, "value": value, **ids})


def line(text: str, at: float = 1_450_000_000.0) -> LogRecord:
    return LogRecord("logs", at, {"line": text, "path": "/var/log/app.log", "member_id": IDENTITY.member_id,
                                  "cluster_id": IDENTITY.cluster_id})


def local(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """A time stamp of this machine's local time, which log stream names follow."""
    return datetime.datetime(year, month, day, hour, minute, second).timestamp()


def test_health_goes_out_on_the_stratos_stream_as_stratos_defined_it(databridge, make_publisher):
    publisher = make_publisher(databridge)
    assert publisher.publish([health(63.2), health(12.5, "load_average")]) == 2
    (memory, load) = databridge.wait_for_events(2)
    assert databridge.definitions["cartridge_agent_health_stats:1.0.0"] == json.loads(HEALTH_DEFINITION)
    assert memory.stream_id == "cartridge_agent_health_stats:1.0.0" and memory.timestamp == 1_450_000_000_000
    assert memory.payload == {"cluster_id": "php.php.domain", "cluster_instance_id": "cluster-1-instance-1",
                              "network_partition_id": "network-partition-1", "member_id": "php.member-1",
                              "partition_id": "partition-1", "health_description": "memory_consumption",
                              "value": 63.2}
    assert (load.payload["health_description"], load.payload["value"]) == ("load_average", 12.5)
    assert databridge.errors == []


def test_a_missing_id_is_sent_as_null_and_shifts_nothing(databridge, make_publisher):
    identity = Identity(application_id="app-1", service_name="php", cluster_id="php.php.domain",
                        tenant_id="-1234", multitenant=False, ports=(), member_id="php.member-1")
    publisher = make_publisher(databridge, identity=identity)
    fields = {"name": "load_average", "value": 5.0, "member_id": "php.member-1",
              "cluster_id": "php.php.domain"}
    record = LogRecord("health", 1_450_000_000.0, fields)
    assert publisher.publish([record]) == 1
    (event,) = databridge.wait_for_events(1)
    assert event.payload["cluster_instance_id"] is None and event.payload["partition_id"] is None
    assert (event.payload["member_id"], event.payload["value"]) == ("php.member-1", 5.0)
    assert databridge.errors == []


def test_log_lines_go_to_the_stream_of_their_day_which_rolls_at_midnight(databridge, make_publisher):
    publisher = make_publisher(databridge)
    before, after = local(2015, 12, 21, 23, 59, 59), local(2015, 12, 22, 0, 0, 1)
    assert publisher.publish([line("last of the day", before), line("first of the next", after)]) == 2
    first, second = databridge.wait_for_events(2)
    assert first.stream_id == "logs.0.php.php.domain.2015.12.21:1.0.0"
    assert second.stream_id == "logs.0.php.php.domain.2015.12.22:1.0.0"
    assert first.meta == {"memberId": "php.member-1"}
    assert first.payload == {"tenantID": "0", "serverName": "php.php.domain", "appName": "",
                             "logTime": "2015.12.21", "priority": "", "message": "last of the day",
                             "logger": "/var/log/app.log", "ip": "", "instance": "php.member-1",
                             "stacktrace": ""}
    assert first.arbitrary is None
    definition = databridge.definitions["logs.0.php.php.domain.2015.12.21:1.0.0"]
    assert [a["name"] for a in definition["payloadData"]] == [
        "tenantID", "serverName", "appName", "logTime", "priority", "message", "logger", "ip", "instance",
        "stacktrace"]
    assert databridge.errors == []


def test_a_tenant_other_than_the_super_tenant_names_its_own_stream(databridge, make_publisher):
    identity = Identity(application_id="app-1", service_name="php", cluster_id="php.php.domain",
                        tenant_id="7", multitenant=True, ports=(), member_id="php.member-1")
    publisher = make_publisher(databridge, identity=identity)
    assert publisher.publish([line("hello", local(2015, 12, 21, 12, 0, 0))]) == 1
    (event,) = databridge.wait_for_events(1)
    assert event.stream_id == "logs.7.php.php.domain.2015.12.21:1.0.0" and event.payload["tenantID"] == "7"


def test_an_expired_session_is_opened_again_and_nothing_is_lost(databridge, make_publisher):
    publisher = make_publisher(databridge)
    assert publisher.publish([health(1.0)]) == 1
    databridge.expire_sessions()
    assert publisher.publish([health(2.0), line("after the expiry")]) == 2
    events = databridge.wait_for_events(3)
    values = [e.payload.get("value", e.payload.get("message")) for e in events]
    assert values == [1.0, 2.0, "after the expiry"]
    assert databridge.logins == [("admin", True), ("admin", True)]


def test_a_session_expiring_under_pipelined_bundles_loses_and_repeats_nothing(databridge, make_publisher):
    publisher = make_publisher(databridge, bundle_size=2)  # 4 bundles, the next sent before each reply
    assert publisher.publish([health(0.0)]) == 1
    databridge.expire_sessions()
    assert publisher.publish([health(float(n)) for n in range(1, 8)]) == 7
    assert [e.payload["value"] for e in databridge.wait_for_events(8)] == [float(n) for n in range(8)]
    assert len(databridge.logins) == 2


def test_a_restarted_receiver_gets_the_records_again_from_the_same_publisher(databridge, make_publisher):
    publisher = make_publisher(databridge)
    assert publisher.publish([health(1.0)]) == 1
    databridge.stop()
    with pytest.raises(LogPublishError, match="does not answer"):
        publisher.publish([health(2.0)], timeout=2)
    databridge.start()

    def offered_again() -> bool:  # as the core does, after its own backoff; here as often as it may
        try:
            return publisher.publish([health(2.0)], timeout=2) == 1
        except LogPublishError:
            return False

    assert wait_until(offered_again)
    assert [e.payload["value"] for e in databridge.wait_for_events(2)] == [1.0, 2.0]


def test_every_receiver_gets_every_record_and_one_that_was_down_catches_up(
        databridge, second_databridge, make_publisher):
    publisher = make_publisher(databridge, second_databridge)
    assert publisher.publish([health(1.0)]) == 1
    second_databridge.stop()
    assert publisher.publish([health(2.0)]) == 1  # the first receiver took it
    assert publisher.publish([health(3.0)]) == 1
    second_databridge.start()
    sent = [1.0, 2.0, 3.0]

    def caught_up() -> bool:  # once its backoff is over, the next batch brings what it missed first
        sent.append(float(len(sent) + 1))
        assert publisher.publish([health(sent[-1])]) == 1
        return len(second_databridge.events) == len(sent)

    assert wait_until(caught_up)
    assert [e.payload["value"] for e in databridge.wait_for_events(len(sent))] == sent
    assert [e.payload["value"] for e in second_databridge.events] == sent
    assert publisher.dropped == {databridge.url: 0, second_databridge.url: 0}
    assert sum(t.name.startswith("pca-thrift") for t in threading.enumerate()) <= 2


def test_a_receiver_behind_too_long_loses_its_oldest_records_counted(
        databridge, second_databridge, make_publisher, caplog):
    publisher = make_publisher(databridge, second_databridge, max_backlog=3)
    second_databridge.stop()
    for value in range(5):
        assert publisher.publish([health(float(value))]) == 1
    assert publisher.dropped == {databridge.url: 0, second_databridge.url: 2}
    assert sum("the most kept for it" in r.getMessage() for r in caplog.records) == 1


def test_with_every_receiver_down_publish_raises_with_each_reason(databridge, second_databridge,
                                                                  make_publisher):
    publisher = make_publisher(databridge, second_databridge)
    databridge.stop()
    second_databridge.stop()
    with pytest.raises(LogPublishError) as raised:
        publisher.publish([health(1.0)], timeout=2)
    text = str(raised.value)
    assert "no receiver took the records" in text and databridge.url in text and second_databridge.url in text


def test_refused_credentials_are_one_line_without_the_password(databridge, make_publisher, caplog):
    caplog.set_level(logging.DEBUG)
    publisher = make_publisher(databridge, password="not-the-Pa55word")
    with pytest.raises(LogPublishError) as raised:
        publisher.publish([health(1.0)])
    text = str(raised.value)
    assert f"{databridge.url} refused the credentials of user 'admin'" in text and "\n" not in text
    assert "not-the-Pa55word" not in text + caplog.text
    assert databridge.logins == [("admin", False)]


def test_an_untrusted_certificate_is_refused_unless_verification_is_turned_off(databridge, make_publisher,
                                                                                caplog):
    with pytest.raises(LogPublishError, match=r"is not trusted .*options.ca_file"):
        make_publisher(databridge, ca_file=None).publish([health(1.0)])
    assert databridge.events == []
    unchecked = make_publisher(databridge, ca_file=None, verify=False)
    assert unchecked.publish([health(1.0)]) == 1
    assert "receiver certificates and host names are NOT checked" in caplog.text


def test_data_over_tls_sends_everything_to_the_secure_port(databridge, make_publisher):
    # The plain data port is made unreachable (offset 1 from the secure port): only TLS can carry the events.
    publisher = make_publisher(databridge, data_over_tls=True, data_port_offset=1)
    assert publisher.publish([health(1.0)]) == 1
    assert databridge.wait_for_events(1)[0].payload["value"] == 1.0


def test_close_logs_out(databridge, make_publisher):
    publisher = make_publisher(databridge)
    assert publisher.publish([health(1.0)]) == 1
    publisher.close(2.0)
    assert databridge.logouts == 1


@pytest.mark.parametrize(("urls", "expected"), [
    ([], "options.urls: at least one receiver"),
    (["cep"], "options.urls[0]: a receiver's host:port"),
    (["cep:50"], "options.urls[0]: a receiver's host:port"),  # its data port would be -50
])
def test_bad_receiver_addresses_are_config_errors(urls, expected):
    config = PublisherConfig(plugin="thrift", options={"urls": urls, "username": "a", "password": "b"})
    with pytest.raises(ConfigErrors, match=re.escape(expected)):
        build_plugin(ThriftLogPublisher, config, key="publishers[0]")
