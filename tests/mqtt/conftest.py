"""Test-owned Mosquitto brokers (plain, TLS, with passwords) and a factory of mqtt transports.

The test CA and its server certificate (``test_ca``, ``server_cert``) are in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pca_mqtt import MqttTransport

from tests.support.mosquitto import Mosquitto
from tests.support.transports import transports


def _started(broker: Mosquitto) -> Iterator[Mosquitto]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain Mosquitto of the test's own, on a free port."""
    yield from _started(Mosquitto(tmp_path / "mosquitto"))


@pytest.fixture
def tls_broker(tmp_path: Path, test_ca, server_cert) -> Iterator[Mosquitto]:
    """A TLS-only Mosquitto whose certificate (localhost, 127.0.0.1) is signed by ``test_ca``."""
    yield from _started(Mosquitto(tmp_path / "mosquitto-tls", tls=server_cert, ca_file=test_ca.ca_file))


@pytest.fixture
def make_mqtt():
    """``make_mqtt(*urls, **settings)``: a transport closed at the end of the test.

    Settings go to TransportConfig or MqttOptions by name; reconnects are fast unless overridden.
    """
    yield from transports(MqttTransport, "mqtt")
