"""Test-owned Tansu brokers (Kafka protocol), one per test: a start takes a fraction of a second, and a
broker of its own gives each test empty memory storage (no topics, groups or offsets of other tests).

The plain broker (``tansu``) is in tests/conftest.py: tests/e2e use it too. Tansu 0.6 cannot authenticate
anyone with memory storage, so the SASL brokers authenticate in a proxy in front of it (see
tests/support/tansu.py).
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


SASL_USER = ("agent", "s3cret-Pa55")
"""The one user name and password the SASL brokers accept."""


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[Tansu]:
    """The test's SASL PLAIN broker (``kafka://127.0.0.1:PORT``), accepting :data:`SASL_USER` only."""
    with Tansu(tmp_path / "tansu-sasl", sasl=SASL_USER) as node:
        yield node


@pytest.fixture
def sasl_tls_broker(tmp_path: Path, test_ca, server_cert) -> Iterator[Tansu]:
    """SASL PLAIN over TLS (``kafka+ssl://localhost:PORT``), accepting :data:`SASL_USER` only."""
    with Tansu(tmp_path / "tansu-sasl-tls", tls=server_cert, ca_file=test_ca.ca_file, host="localhost",
               sasl=SASL_USER) as node:
        yield node
