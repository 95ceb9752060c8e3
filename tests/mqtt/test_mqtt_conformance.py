"""The transport conformance suite of pca-core, run against the mqtt plugin and test-owned Mosquittos."""

from __future__ import annotations

import uuid

import pytest

from pca_core.testing import TransportConformance


class TestMqttConformance(TransportConformance):
    """Every behaviour of the Transport contract, over MQTT 3.1.1 (the broker fixtures are in conftest)."""

    plugin = "mqtt"

    @pytest.fixture
    def redelivery_settings(self) -> dict:
        """One client id for both subscribers, and a persistent session: the broker keeps what is unacked."""
        return {"client_id": f"pca-conformance-{uuid.uuid4().hex[:12]}",
                "options": {"persistent_session": True}}


class TestMqtt5Conformance(TestMqttConformance):
    """The same over MQTT 5."""

    @pytest.fixture
    def transport_options(self) -> dict:
        return {"protocol": "5"}
