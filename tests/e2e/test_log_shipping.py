"""The agent ships its log lines and health statistics to a ``file`` publisher, at least once.

One agent on the memory transport, driven by the simulated control plane; the publisher writes JSON lines
that the test reads back.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pca_core.agent.lifecycle import Phase
from pca_core.config import build, to_data
from tests.e2e.test_lifecycle import Harness, control_plane
from tests.support.waiting import wait_until


class Shipping(Harness):
    """An agent that tails ``app.log`` and ships logs and health to ``records.jsonl``."""

    def __init__(self, home: Path, bus: str) -> None:
        super().__init__(home, bus)
        self.app_log = home / "app.log"
        self.output = home / "records.jsonl"

    def config(self):
        tree = to_data(super().config())
        tree["logs"] = {"enabled": True, "paths": [str(self.app_log)]}
        tree["health"] = {"enabled": True, "interval": 0.05}
        tree["publishers"] = [{"plugin": "file", "flush_interval": 0.05,
                               "options": {"path": str(self.output)}}]
        return build(tree, source="test", environ={})

    def records(self, stream: str) -> list[dict]:
        if not self.output.exists():
            return []
        return [r for r in map(json.loads, self.output.read_text().splitlines()) if r["stream"] == stream]

    def lines(self) -> list[str]:
        return [r["fields"]["line"] for r in self.records("logs")]


@pytest.fixture
def shipping(request) -> Iterator[Shipping]:
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    h = Shipping(home, f"shipping-{request.node.name}")
    h.app_log.write_text("written before the agent started\n")
    yield h
    h.dispose()


def test_lines_and_health_reach_the_publisher_and_a_restart_repeats_none(shipping):
    simulator, transport = control_plane(shipping)
    agent = shipping.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    with shipping.app_log.open("a") as log:
        log.write("first\nsecond\n")
    assert wait_until(lambda: shipping.lines() == ["first", "second"], 20), shipping.lines()
    assert wait_until(lambda: len(shipping.records("health")) >= 2, 20)

    first = shipping.records("logs")[0]["fields"]
    assert first == {"line": "first", "path": str(shipping.app_log), "member_id": "php.member-1",
                     "cluster_id": "php.domain"}
    health = shipping.records("health")[0]["fields"]
    assert health["name"] in ("memory_consumption", "load_average") and isinstance(health["value"], float)
    assert health["member_id"] == "php.member-1" and health["cluster_instance_id"] == "php-1"

    shipping.shutdown()
    positions = json.loads((shipping.home / "state" / "log-positions.json").read_text())
    assert [(f["path"], f["offset"]) for f in positions["files"]] == [
        (str(shipping.app_log), shipping.app_log.stat().st_size)]

    with shipping.app_log.open("a") as log:
        log.write("written while the agent was down\n")
    agent = shipping.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    assert wait_until(lambda: len(shipping.lines()) == 3, 20), shipping.lines()
    assert shipping.lines() == ["first", "second", "written while the agent was down"]
    transport.close()
    simulator.close()
