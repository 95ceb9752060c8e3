"""The transport conformance suite of pca-core, run against the mqtt plugin and test-owned Mosquittos."""

from __future__ import annotations

import pytest

from pca_core.testing import TransportConformance


class TestMqttConformance(TransportConformance):
    """Every behaviour of the Transport contract, over MQTT 3.1.1 (the broker fixtures are in conftest)."""

    plugin = "mqtt"

    @pytest.fixture
    def transport_options(self) -> dict:
        return {"reconnect_delays": [0.05, 0.1, 0.2], "jitter": 0.1}


class TestMqtt5Conformance(TestMqttConformance):
    """The same over MQTT 5."""

    @pytest.fixture
    def transport_options(self) -> dict:
        return {"reconnect_delays": [0.05, 0.1, 0.2], "jitter": 0.1, "protocol": "5"}
