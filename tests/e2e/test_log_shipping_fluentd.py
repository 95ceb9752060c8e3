"""The agent ships its log lines to a Fluentd forward receiver: multiline records, an outage, a restart.

One agent on the memory transport, driven by the simulated control plane, with the ``fluentd`` publisher
(pca-fluentd) pointed at the Forward protocol receiver of ``tests/support/forward.py``, configured as a
user would: ``logs.multiline`` and the publisher's tag template.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pca_core.agent.lifecycle import Phase
from pca_core.config import build, to_data
from tests.e2e.test_lifecycle import Harness, control_plane
from tests.support.forward import ForwardReceiver
from tests.support.waiting import wait_until

TRACE = "2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n"


class Shipping(Harness):
    """An agent that tails ``app.log`` and ships its records to a Forward receiver."""

    def __init__(self, home: Path, bus: str, receiver: ForwardReceiver) -> None:
        super().__init__(home, bus)
        self.app_log = home / "app.log"
        self.receiver = receiver

    def config(self):
        tree = to_data(super().config())
        tree["logs"] = {"enabled": True, "paths": [str(self.app_log)],
                        "multiline": {"first_line": r"\d{4}-\d\d-\d\d ", "flush_timeout": 0.2}}
        tree["health"] = {"enabled": False}
        tree["publishers"] = [{"plugin": "fluentd", "streams": ["logs"], "flush_interval": 0.05,
                               "options": {"servers": [self.receiver.url], "tag": "app.{cluster_id}"}}]
        return build(tree, source="test", environ={})

    def lines(self) -> list[str]:
        return [event.record["line"] for event in self.receiver.events]


@pytest.fixture
def shipping(request) -> Iterator[Shipping]:
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    receiver = ForwardReceiver()
    receiver.start()
    h = Shipping(home, f"fluentd-{request.node.name}", receiver)
    h.app_log.write_text("")
    yield h
    h.dispose()
    receiver.stop()


def test_records_of_several_lines_survive_a_receiver_outage_and_a_restart_repeats_none(shipping):
    simulator, transport = control_plane(shipping)
    agent = shipping.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    with shipping.app_log.open("a") as log:
        log.write("2024-01-01 INFO started\n" + TRACE)
    expected = ["2024-01-01 INFO started", TRACE.rstrip("\n")]  # the last record after its flush timeout
    assert wait_until(lambda: shipping.lines() == expected, 20), shipping.lines()
    event = shipping.receiver.events[0]
    assert event.tag == "app.php.domain" and event.event_time
    assert event.record == {"line": "2024-01-01 INFO started", "path": str(shipping.app_log),
                            "member_id": "php.member-1", "cluster_id": "php.domain"}

    shipping.receiver.stop()
    with shipping.app_log.open("a") as log:
        log.write("2024-01-01 INFO while the receiver is down\n2024-01-01 INFO last\n")
    shipping.receiver.start()
    expected += ["2024-01-01 INFO while the receiver is down", "2024-01-01 INFO last"]
    assert wait_until(lambda: shipping.lines() == expected, 30), shipping.lines()

    shipping.shutdown()  # a clean stop writes the positions: a restart sends nothing twice
    with shipping.app_log.open("a") as log:
        log.write("2024-01-01 INFO written while the agent was down\n")
    agent = shipping.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    expected.append("2024-01-01 INFO written while the agent was down")
    assert wait_until(lambda: shipping.lines() == expected, 20), shipping.lines()
    transport.close()
    simulator.close()
