"""Bootstrap servers, topic names, pattern regexes and offset tracking of the kafka transport (no broker)."""

from __future__ import annotations

import re

import pytest
from pca_kafka import KafkaOptions, KafkaTransport, Naming, parse_url
from pca_kafka._offsets import Offsets
from pca_kafka.urls import parse_urls

from pca_core import TlsConfig, TransportConfig


@pytest.mark.parametrize("text, host, port, tls", [
    ("kafka://broker", "broker", 9092, False),
    ("kafka://broker:9093", "broker", 9093, False),
    ("kafka+ssl://broker:9094", "broker", 9094, True),
    ("broker:9092", "broker", 9092, False),
    ("broker", "broker", 9092, False),
    ("kafka://[::1]", "::1", 9092, False),
])
def test_url_forms(text, host, port, tls):
    server = parse_url(text)
    assert (server.host, server.port, server.tls) == (host, port, tls)


def test_a_bare_host_follows_the_tls_setting():
    assert parse_url("broker:9093", tls=True).tls and not parse_url("kafka://broker", tls=True).tls


@pytest.mark.parametrize("text, expected", [
    ("amqp://broker", r"unknown scheme 'amqp'.*transport.plugin = \"amqp\""),
    ("http://broker", "unknown scheme 'http'"),
    ("kafka://user:hunter2@broker", "transport.username and transport.password"),
    ("kafka://broker/path", "no path"),
    ("kafka://:9092", "no host"),
    ("kafka://broker:0", "port 0"),
])
def test_malformed_urls(text, expected):
    with pytest.raises(ValueError, match=expected) as raised:
        parse_url(text)
    assert "hunter2" not in str(raised.value)


def test_a_list_is_all_tls_or_all_plain():
    with pytest.raises(ValueError, match="mixes TLS"):
        parse_urls(["kafka://a", "kafka+ssl://b"])
    with pytest.raises(ValueError, match="no bootstrap server"):
        parse_urls([])


def test_config_check_names_each_key(tmp_path):
    config = TransportConfig(plugin="kafka", urls=("kafka://a", "mqtt://b"), tls=TlsConfig(ca_file="/nope"),
                             password="secret")
    options = KafkaOptions(prefix="bad prefix", metadata_max_age=0, max_request_size=0, max_in_flight=0)
    keys = {issue.key for issue in KafkaTransport.check_config(config, options)}
    assert keys == {"urls", "options.prefix", "options.metadata_max_age", "options.max_request_size",
                    "options.max_in_flight", "username", "tls.ca_file"}


@pytest.mark.parametrize("topic, name", [
    ("instance/status/InstanceStartedEvent", "instance.status.InstanceStartedEvent"),
    ("topology", "topology"),
    ("a-b/c_d", "a-b.c_d"),
])
def test_topics_become_kafka_names(topic, name):
    assert Naming().name(topic) == name
    assert Naming().topic(name) == topic


def test_the_separator_and_prefix_are_configurable():
    naming = Naming("_", "stratos-")
    assert naming.name("a/b") == "stratos-a_b"
    assert naming.topic("stratos-a_b") == "a/b"
    assert naming.topic("other-a_b") is None
    assert re.fullmatch(naming.regex("a/#"), "stratos-a_b_c")


@pytest.mark.parametrize("topic, expected", [
    ("a.b/c", "not '.'"),
    ("a b/c", "only letters, digits"),
    ("ünï/c", "only letters, digits"),
    ("a/+", "not a publishable topic"),
    ("x" * 250, "longer than 249"),
])
def test_topics_that_cannot_be_kafka_names_are_refused(topic, expected):
    with pytest.raises(ValueError, match=expected):
        Naming().name(topic)


@pytest.mark.parametrize("pattern, matching, other", [
    ("a/#", ["a", "a.b", "a.b.c"], ["ab", "b.a", "ab.c"]),
    ("a/+", ["a.b", "a."], ["a", "a.b.c"]),
    ("+/c", ["x.c", ".c"], ["x.y.c", "c", "x.cc"]),
    ("#", ["a", "a.b"], []),
    ("a/b", ["a.b"], ["a.bb", "a.b.c", "aXb"]),
])
def test_patterns_match_as_in_mqtt(pattern, matching, other):
    regex = re.compile(Naming().regex(pattern))
    assert all(regex.fullmatch(name) for name in matching)
    assert not any(regex.fullmatch(name) for name in other)


def test_offsets_commit_only_an_unbroken_run_of_acknowledged_messages():
    offsets = Offsets()
    for offset in (5, 6, 7, 8):
        offsets.delivered("p", offset)
    offsets.acked("p", 6)
    assert offsets.committable() == {} and offsets.in_flight == 3
    offsets.acked("p", 5)
    assert offsets.committable() == {"p": 7}
    offsets.acked("p", 8)
    assert offsets.committable() == {}
    offsets.acked("p", 7)
    assert offsets.committable() == {"p": 9} and offsets.in_flight == 0
    offsets.retry({"p": 9})
    assert offsets.committable() == {"p": 9}


def test_a_revoked_partition_is_forgotten():
    offsets = Offsets()
    offsets.delivered("p", 1)
    offsets.delivered("q", 1)
    offsets.forget(["p"])
    offsets.acked("p", 1)
    assert offsets.in_flight == 1 and offsets.committable() == {}
