"""The log publisher conformance suite of pca-core, run against the thrift plugin and databridge receivers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pca_core.testing import LogPublisherConformance, LogReceiver
from tests.support.databridge import DatabridgeReceiver
from tests.support.databridge_records import DatabridgeLogReceiver


class TestThriftConformance(LogPublisherConformance):
    """Every behaviour of the LogPublisher contract over the databridge (records decoded back)."""

    plugin = "thrift"
    timestamp_resolution = 0.001  # the databridge carries milliseconds

    @pytest.fixture
    def receiver(self, server_cert, test_ca) -> Iterator[LogReceiver]:
        with DatabridgeReceiver(server_cert) as databridge:
            yield DatabridgeLogReceiver(databridge, str(test_ca.ca_file))
            assert databridge.errors == []  # nothing refused, no bundle misaligned
