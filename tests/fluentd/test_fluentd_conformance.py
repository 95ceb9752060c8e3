"""The log publisher conformance suite of pca-core, run against the fluentd plugin and Forward receivers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pca_core.testing import LogPublisherConformance, LogReceiver
from tests.support.fluentd_records import SHARED_KEY, FluentdLogReceiver
from tests.support.forward import ForwardReceiver


class TestFluentdConformance(LogPublisherConformance):
    """Every behaviour of the LogPublisher contract over plain Forward (records decoded back)."""

    plugin = "fluentd"
    timestamp_resolution = 1e-6  # EventTime carries nanoseconds; a float timestamp has about 0.2 µs

    @pytest.fixture
    def receiver(self) -> Iterator[LogReceiver]:
        with ForwardReceiver() as forward:
            yield FluentdLogReceiver(forward)
            assert forward.errors == []  # nothing malformed, no size that miscounts
            assert all(event.mode == "packed" and event.event_time for event in forward.events)


class TestFluentdConformanceOverTlsWithSharedKeyAndGzip(LogPublisherConformance):
    """The same contract over TLS, with the shared-key handshake and compressed chunks."""

    plugin = "fluentd"

    @pytest.fixture
    def receiver(self, server_cert, test_ca) -> Iterator[LogReceiver]:
        with ForwardReceiver(cert=server_cert, shared_key=SHARED_KEY) as forward:
            yield FluentdLogReceiver(forward, tls=True, ca_file=str(test_ca.ca_file), shared_key=SHARED_KEY,
                                     compress="gzip")
            assert forward.errors == []
            assert all(accepted for _host, _user, accepted in forward.handshakes)
            assert all(event.mode == "compressed" for event in forward.events)
