from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pca_core.runtime.scheduler import Scheduler
from tests.support.certs import CertPair, TestCA
from tests.support.dists import FakeDist, pca_env
from tests.support.rabbitmq import RabbitMQ
from tests.support.tansu import Tansu

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path):
    """A directory of extra distributions; ``site.dist(...)`` adds one, ``site.env`` runs pca with them."""

    class Site:
        root = tmp_path / "site"

        def dist(self, name: str, entry_points: dict[str, dict[str, str]], version: str = "1.0") -> FakeDist:
            return FakeDist(self.root, name, version, entry_points)

        @property
        def env(self) -> dict[str, str]:
            return pca_env(self.root, cache=tmp_path / "cache")

    Site.root.mkdir()
    return Site()


@pytest.fixture
def scheduler():
    """A started core scheduler with two workers; its shutdown must finish in time."""
    running = Scheduler(workers=2)
    running.start()
    yield running
    assert running.shutdown(10)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory) -> Iterator[RabbitMQ]:
    """The session's RabbitMQ node, with the AMQP 1.0 and MQTT plugins (``mqtt_port``), for tests/amqp and
    tests/e2e: booted by the first test that asks, shut down at the end of the session."""
    with RabbitMQ(tmp_path_factory.mktemp("rabbitmq"), mqtt=True) as node:
        yield node


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    """A throwaway CA for the session's TLS brokers."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def server_cert(test_ca) -> CertPair:
    """A server certificate signed by ``test_ca`` for localhost and 127.0.0.1."""
    return test_ca.issue("localhost")


@pytest.fixture
def tansu(tmp_path: Path) -> Iterator[Tansu]:
    """A Tansu (Kafka-protocol) broker of the test's own, started, stopped after the test.

    Per test, not per session: a start takes well under a second, and its memory storage then holds only
    this test's topics and consumer groups.
    """
    with Tansu(tmp_path / "tansu") as broker:
        yield broker
