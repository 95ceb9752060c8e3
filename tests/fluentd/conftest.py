"""Forward protocol receivers for the fluentd publisher's tests (see tests/support/forward.py), each its own
on a free port, started, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fluentd_records import SHARED_KEY, USERS
from tests.support.forward import ForwardReceiver


@pytest.fixture
def forward() -> Iterator[ForwardReceiver]:
    """A plain-text receiver that asks for no handshake, as a ``<source> @type forward`` without security."""
    with ForwardReceiver() as receiver:
        yield receiver


@pytest.fixture
def second_forward() -> Iterator[ForwardReceiver]:
    """Another plain-text receiver, for failover."""
    with ForwardReceiver() as receiver:
        yield receiver


@pytest.fixture
def tls_forward(server_cert) -> Iterator[ForwardReceiver]:
    """A receiver serving TLS with ``server_cert`` (signed by ``test_ca``, for localhost and 127.0.0.1)."""
    with ForwardReceiver(cert=server_cert) as receiver:
        yield receiver


@pytest.fixture
def keyed_forward() -> Iterator[ForwardReceiver]:
    """A receiver that requires the HELO/PING/PONG handshake with :data:`SHARED_KEY`."""
    with ForwardReceiver(shared_key=SHARED_KEY) as receiver:
        yield receiver


@pytest.fixture
def login_forward() -> Iterator[ForwardReceiver]:
    """A receiver that requires the handshake with :data:`SHARED_KEY` and a user of :data:`USERS`."""
    with ForwardReceiver(shared_key=SHARED_KEY, users=USERS) as receiver:
        yield receiver
