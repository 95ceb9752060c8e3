"""Broker URLs and the topic-to-address mapping of the amqp transport (no broker needed)."""

from __future__ import annotations

import pytest
from pca_amqp import Addressing, AmqpOptions, AmqpTransport, parse_url
from pca_amqp.urls import parse_urls

from pca_core import ConfigError, TlsConfig, TransportConfig


@pytest.mark.parametrize("text, host, port, tls", [
    ("amqp://broker", "broker", 5672, False),
    ("amqp://broker:5673", "broker", 5673, False),
    ("amqps://broker", "broker", 5671, True),
    ("AMQPS://Broker.Example:5999/", "broker.example", 5999, True),
    ("broker:5672", "broker", 5672, False),
    ("broker", "broker", 5672, False),
    ("amqp://[::1]", "::1", 5672, False),
])
def test_url_forms(text, host, port, tls):
    url = parse_url(text)
    assert (url.host, url.port, url.tls) == (host, port, tls)


def test_a_bare_host_follows_the_tls_setting_and_an_explicit_scheme_wins():
    assert parse_url("broker", tls=True).tls and parse_url("broker", tls=True).port == 5671
    assert not parse_url("amqp://broker", tls=True).tls


def test_credentials_are_kept_but_never_shown():
    url = parse_url("amqp://agent:p%40ss@broker")
    assert url.username == "agent" and url.password is not None and url.password.reveal() == "p@ss"
    assert str(url) == "amqp://agent:***@broker:5672"
    assert url.address == "amqp://broker:5672"
    assert "p@ss" not in repr(url)


@pytest.mark.parametrize("text, expected", [
    ("mqtt://broker:1883", r"unknown scheme 'mqtt'.*transport.plugin = \"mqtt\""),
    ("kafka://broker:9092", r"unknown scheme 'kafka'.*transport.plugin = \"kafka\""),
    ("http://broker", "unknown scheme 'http'"),
    ("amqp://broker:99999", "not a broker address"),
    ("amqp://:5672", "no host"),
    ("amqp://broker/queue", "no path"),
    ("amqp://broker:0", "port 0"),
])
def test_malformed_urls(text, expected):
    with pytest.raises(ValueError, match=expected):
        parse_url(text)


def test_a_malformed_url_never_shows_its_password():
    with pytest.raises(ValueError) as raised:
        parse_urls(["amqp://a:b@ok", "ftp://user:hunter2@broker"])
    assert "hunter2" not in str(raised.value) and str(raised.value).startswith("[1]: ")


def test_config_check_names_each_key():
    config = TransportConfig(plugin="amqp", urls=("amqp://ok", "mqtt://broker"),
                             tls=TlsConfig(ca_file="/nope"))
    options = AmqpOptions(address_prefix="", prefetch=0, heartbeat=0, max_senders=0)
    keys = {issue.key for issue in AmqpTransport.check_config(config, options)}
    assert keys == {"urls[1]", "options.address_prefix", "options.prefetch", "options.heartbeat",
                    "options.max_senders", "tls.ca_file"}
    no_urls = AmqpTransport.check_config(TransportConfig(plugin="amqp"), AmqpOptions())
    assert [issue.key for issue in no_urls] == ["urls"]
    plain_with_tls = TransportConfig(plugin="amqp", urls=("amqp://broker",), tls=TlsConfig())
    assert [i.key for i in AmqpTransport.check_config(plain_with_tls, AmqpOptions())] == ["tls"]


@pytest.mark.parametrize("topic, address, key", [
    ("instance/status/InstanceStartedEvent", "/topic/instance.status.InstanceStartedEvent",
     "instance.status.InstanceStartedEvent"),
    ("topology", "/topic/topology", "topology"),
    ("a//b", "/topic/a..b", "a..b"),
    ("a/*/b", "/topic/a.*.b", "a.*.b"),  # published, a '*' is a plain character of the key
])
def test_topics_become_routing_keys_on_the_prefix(topic, address, key):
    assert Addressing("/topic/").address(topic) == (address, key)


def test_the_prefix_is_configurable():
    assert Addressing("/exchange/stratos/").address("a/b") == ("/exchange/stratos/a.b", "a.b")
    assert Addressing("/exchange/stratos/").source("a/#") == "/exchange/stratos/a.#"


@pytest.mark.parametrize("pattern, source", [
    ("topology/#", "/topic/topology.#"),
    ("instance/notifier/+", "/topic/instance.notifier.*"),
    ("+/c/#", "/topic/*.c.#"),
    ("#", "/topic/#"),
    ("a/b", "/topic/a.b"),
])
def test_patterns_map_their_wildcards(pattern, source):
    assert Addressing("/topic/").source(pattern) == source


@pytest.mark.parametrize("call, text, expected", [
    ("address", "a.b/c", "may not contain '.'"),
    ("address", "a/+", "not a publishable topic"),
    ("address", "x" * 256, "longer than an AMQP routing key"),
    ("source", "a.b/#", "may not contain '.'"),
    ("source", "a/*", "'\\*' is a wildcard"),
    ("source", "a/#/b", "invalid pattern"),
])
def test_topics_that_cannot_be_routing_keys_are_refused(call, text, expected):
    with pytest.raises(ValueError, match=expected):
        getattr(Addressing("/topic/"), call)(text)


@pytest.mark.parametrize("pattern, to, subject, topic", [
    ("a/b", None, None, "a/b"),                                   # an exact pattern is the topic
    ("a/#", "/topic/a.b.c", "a.b.c", "a/b/c"),                    # our own publishes carry both
    ("a/#", None, "a.x", "a/x"),                                   # RabbitMQ: MQTT / 0-9-1 publishers
    ("a/#", "/queue/elsewhere", "a.y", "a/y"),                     # a 'to' of another prefix is ignored
    ("a/+", "/topic/a.b", "JMSType", "a/b"),                       # the first candidate that matches
    ("a/+", None, "other.key", "other/key"),                       # none matches: the first candidate
    ("a/#", None, None, None),                                     # no candidate at all
])
def test_a_received_messages_topic(pattern, to, subject, topic):
    assert Addressing("/topic/").topic(pattern, to, subject) == topic


def test_tls_files_proton_cannot_use_are_a_config_error(tmp_path):
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("not a certificate\n")
    config = TransportConfig(plugin="amqp", urls=("amqps://broker",),
                             tls=TlsConfig(ca_file=str(not_a_certificate)))
    with pytest.raises(ConfigError, match=r"transport\.tls"):
        AmqpTransport(config, AmqpOptions())
