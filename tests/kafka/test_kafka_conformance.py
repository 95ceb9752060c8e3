"""The transport conformance suite of pca-core, run against the kafka plugin and Tansu brokers of its own."""

from __future__ import annotations

import uuid

import pytest

from pca_core.testing import TransportConformance


class TestKafkaConformance(TransportConformance):
    """Every behaviour of the Transport contract over Kafka (the broker fixtures are in conftest)."""

    plugin = "kafka"

    @pytest.fixture
    def transport_options(self) -> dict:
        return {"metadata_max_age": 0.2}  # a new topic is noticed within 0.2 s

    @pytest.fixture
    def redelivery_settings(self) -> dict:
        """One client id, hence one consumer group, for both subscribers: the second resumes at its offset."""
        return {"client_id": f"pca-conformance-{uuid.uuid4().hex[:12]}"}
