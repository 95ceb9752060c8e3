"""Test-owned Tansu brokers (Kafka protocol), one per test: a start takes a fraction of a second, and a
broker of its own gives each test empty memory storage (no topics, groups or offsets of other tests).

The plain broker (``tansu``) is in tests/conftest.py: tests/e2e use it too. There is no ``auth_broker``:
Tansu 0.6 cannot authenticate anyone with memory storage (see tests/support/tansu.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tansu import Tansu


@pytest.fixture
def broker(tansu: Tansu) -> Tansu:
    """The test's plain broker, running: ``kafka://127.0.0.1:PORT``."""
    return tansu


@pytest.fixture
def tls_broker(tmp_path: Path, test_ca, server_cert) -> Iterator[Tansu]:
    """The test's TLS broker (``kafka+ssl://localhost:PORT``): a plain Tansu behind a TLS proxy whose
    certificate (localhost, 127.0.0.1) ``test_ca`` signed."""
    with Tansu(tmp_path / "tansu-tls", tls=server_cert, ca_file=test_ca.ca_file, host="localhost") as node:
        yield node
