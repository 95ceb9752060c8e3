"""A stand-in for pca-thrift's ``thrift`` log publisher, installed as a distribution of its own.

The legacy ``agent.conf`` enables health statistics to a Thrift receiver (``cep.stats.publisher.enabled``),
which needs pca-thrift. The stand-in takes the options that key maps to and appends each record to the
file named by ``THRIFT_STAND_IN_FILE``.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.dists import FakeDist, pca_env

SOURCE = """
import json, os
from pca_core import LogPublisher, PluginOptions, Secret

class Options(PluginOptions):
    urls: list[str] = []
    username: str | None = None
    password: Secret | None = None

class StandIn(LogPublisher):
    api_version = (2, 0)
    Options = Options

    def publish(self, batch, *, timeout=None):
        with open(os.environ.get("THRIFT_STAND_IN_FILE", os.devnull), "a") as out:
            for record in batch:
                out.write(json.dumps(dict(record.fields), default=str) + "\\n")
        return len(batch)
"""


def install(root: Path) -> dict[str, str]:
    """Installs the stand-in under ``root``; returns the environment for a ``pca`` that sees it."""
    stand_in = FakeDist(root / "site", "thrift-stand-in",
                        entry_points={"pca.log_publishers": {"thrift": "thrift_stand_in:StandIn"}})
    stand_in.install()
    stand_in.add_module("thrift_stand_in", SOURCE)
    return pca_env(root / "site", cache=root / "cache")
