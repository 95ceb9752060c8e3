"""The transport conformance suite of pca-core, run against the amqp plugin and RabbitMQ nodes of its own."""

from __future__ import annotations

from pca_core.testing import TransportConformance


class TestAmqpConformance(TransportConformance):
    """Every behaviour of the Transport contract over AMQP 1.0 (the broker fixtures are in conftest)."""

    plugin = "amqp"
