"""A real WSO2 databridge Thrift receiver per test (see tests/support/databridge.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databridge import DatabridgeReceiver


@pytest.fixture
def databridge(server_cert) -> Iterator[DatabridgeReceiver]:
    """The test's databridge receiver, running: plain data port ``port``, TLS port ``secure_port``
    (``url``) with ``server_cert``, accepting the user ``admin`` with password ``admin``."""
    with DatabridgeReceiver(server_cert) as receiver:
        yield receiver
