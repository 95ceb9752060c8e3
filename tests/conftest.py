from __future__ import annotations

from pathlib import Path

import pytest

from pca_core.runtime.scheduler import Scheduler
from tests.support.dists import FakeDist, pca_env

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
