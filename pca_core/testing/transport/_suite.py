"""The transport conformance suite: every part of it in one class for a plugin's tests to subclass."""

from __future__ import annotations

from pca_core.testing.transport._handlers import HandlerTests
from pca_core.testing.transport._messaging import MessagingTests
from pca_core.testing.transport._outages import OutageTests
from pca_core.testing.transport._redelivery import RedeliveryTests
from pca_core.testing.transport._subscriptions import SubscriptionTests

__all__ = ["TransportConformance"]


class TransportConformance(MessagingTests, SubscriptionTests, HandlerTests, OutageTests, RedeliveryTests):
    """The behaviour every transport plugin must show; subclass it in the plugin's tests.

    The subclass names the plugin and provides the brokers; the suite builds every transport through
    discovery, exactly as the agent does, so the entry point is tested too::

        from pca_core.testing import Broker, TransportConformance

        class TestMqttConformance(TransportConformance):
            plugin = "mqtt"                        # the name in the pca.transports entry point group

            @pytest.fixture
            def broker(self) -> Iterator[Broker]:  # required: a broker this test owns, on a free port
                ...

            @pytest.fixture
            def tls_broker(self) -> Iterator[Broker]:  # required with capability "tls"; has ca_file
                ...

            @pytest.fixture
            def redelivery_settings(self) -> dict:  # required with capability "redelivery"
                return {"client_id": f"pca-test-{uuid.uuid4().hex}", "options": {"persistent_session": True}}

            @pytest.fixture
            def transport_options(self) -> dict:   # optional: the plugin's own options table
                return {"keepalive": 10}

            @pytest.fixture
            def transport_settings(self) -> dict:  # optional: more TransportConfig fields for every transport
                return {"connect_timeout": 5}

    ``broker`` may also come from a conftest, at any scope: tests use their own topics and leave the
    broker running. Tests of a capability the plugin's class does not declare (``qos1``, ``wildcards``,
    ``tls``, ``connection_state``, ``redelivery``) are skipped with a reason naming it.

    ``redelivery_settings`` are the ``make_transport`` settings with which a second transport takes over
    the subscription of a first one that was closed; an ``options`` table in them is added to
    ``transport_options``. ``transport_settings`` are added to the suite's defaults, which keep
    reconnects fast (:data:`~pca_core.testing.transport._base.FAST_RECONNECT`: ``reconnect_delay`` 0.05 s,
    ``max_reconnect_delay`` 0.5 s).

    Attributes:
        plugin: the entry point name of the transport under test; the subclass must set it.
        wait_timeout: how long to wait for something that should happen (a message, a state change).
        reconnect_timeout: how long to wait for the transport to reconnect after a broker restart.
        liveness_margin: added to a timeout the transport was given, to bound how late it may return.
        close_timeout: the timeout given to ``close`` for every transport at teardown.
    """
