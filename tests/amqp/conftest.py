"""Test-owned RabbitMQ nodes with AMQP 1.0: one plain and one TLS node per session, a bare one per use.

A node takes seconds to boot, so the session shares them; ``broker`` and ``tls_broker`` hand the session
node to a test (started, should an earlier test have left it stopped), as the conformance suite expects.
The plain node (``rabbitmq``), the test CA and its server certificate (``test_ca``, ``server_cert``) are
in tests/conftest.py: tests/e2e use them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rabbitmq import RabbitMQ


def _booted(node: RabbitMQ) -> Iterator[RabbitMQ]:
    with node:
        yield node


@pytest.fixture(scope="session")
def rabbitmq_tls(tmp_path_factory, test_ca, server_cert) -> Iterator[RabbitMQ]:
    """The session's TLS-only node, its certificate (localhost, 127.0.0.1) signed by ``test_ca``.

    Its ``url`` names ``localhost``: proton checks a certificate's name against DNS names only.
    """
    yield from _booted(RabbitMQ(tmp_path_factory.mktemp("rabbitmq-tls"), tls=server_cert,
                                ca_file=test_ca.ca_file, host="localhost"))


@pytest.fixture
def broker(rabbitmq: RabbitMQ) -> RabbitMQ:
    """The session's plain node, running."""
    rabbitmq.start()
    return rabbitmq


@pytest.fixture
def tls_broker(rabbitmq_tls: RabbitMQ) -> RabbitMQ:
    """The session's TLS node, running."""
    rabbitmq_tls.start()
    return rabbitmq_tls


@pytest.fixture
def bare_rabbitmq(tmp_path: Path) -> Iterator[RabbitMQ]:
    """A node of the test's own WITHOUT the AMQP 1.0 plugin (it speaks AMQP 0-9-1 only)."""
    yield from _booted(RabbitMQ(tmp_path / "rabbitmq-bare", amqp1=False))
