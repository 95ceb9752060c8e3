"""Broker addresses: URL forms, default ports, TLS, and passwords that never show."""

import pytest
from pca_mqtt.urls import BrokerUrl, parse_url, parse_urls


@pytest.mark.parametrize("text, host, port, tls", [
    ("localhost:1883", "localhost", 1883, False),
    ("10.0.0.5:61616", "10.0.0.5", 61616, False),
    ("broker", "broker", 1883, False),
    ("mqtt://broker", "broker", 1883, False),
    ("mqtt://broker:1884", "broker", 1884, False),
    ("tcp://broker:1885", "broker", 1885, False),
    ("mqtts://broker", "broker", 8883, True),
    ("ssl://broker:9999", "broker", 9999, True),
    ("MQTTS://Broker.Example:8884/", "broker.example", 8884, True),
    ("mqtt://[::1]:1883", "::1", 1883, False),
    (" localhost:1883 ", "localhost", 1883, False),
])
def test_forms(text, host, port, tls):
    url = parse_url(text)
    assert (url.host, url.port, url.tls) == (host, port, tls)


def test_legacy_host_port_follows_the_tls_setting():
    assert parse_url("broker:8883", tls=True).tls
    assert parse_url("broker", tls=True).port == 8883
    assert not parse_url("mqtt://broker", tls=True).tls  # an explicit scheme wins


def test_credentials_are_kept_but_never_shown():
    url = parse_url("mqtt://agent:p%40ss@broker:1883")
    assert url.username == "agent" and url.password is not None and url.password.reveal() == "p@ss"
    assert str(url) == "mqtt://agent:***@broker:1883"
    assert "p@ss" not in repr(url) and "p%40ss" not in repr(url)
    assert str(parse_url("mqtt://agent@broker")) == "mqtt://agent@broker:1883"
    assert str(BrokerUrl("::1", 1883, False)) == "mqtt://[::1]:1883"


@pytest.mark.parametrize("text, expected", [
    ("amqp://broker:5672", "unknown scheme"),
    ("mqtt://broker:99999", "not a broker address"),
    ("mqtt://broker:x", "not a broker address"),
    ("mqtt://:1883", "no host"),
    ("mqtt://broker:1883/topic", "no path"),
    ("mqtt://broker:1883?x=1", "no path"),
    ("mqtt://broker:0", "port 0"),
])
def test_malformed(text, expected):
    with pytest.raises(ValueError, match=expected):
        parse_url(text)


def test_a_malformed_url_is_shown_without_its_password():
    with pytest.raises(ValueError) as info:
        parse_url("mqtt://agent:s3cret@broker:notaport")
    assert "s3cret" not in str(info.value) and "agent:***@" in str(info.value)


def test_lists():
    assert [u.port for u in parse_urls(["a:1", "mqtt://b", "c:3"])] == [1, 1883, 3]
    with pytest.raises(ValueError, match="no broker address"):
        parse_urls([])
    with pytest.raises(ValueError, match=r"^\[1\]: "):
        parse_urls(["a:1", "bad://b"])
    with pytest.raises(ValueError, match="mixes TLS"):
        parse_urls(["mqtt://a", "mqtts://b"])
    with pytest.raises(ValueError, match=r"transport\.tls"):
        parse_urls(["mqtt://a"], tls=True)
