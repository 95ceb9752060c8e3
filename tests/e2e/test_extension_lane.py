"""Extension scripts run on the lifecycle's own thread: a long one never starves the scheduler's workers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
import pytest

from pca_core.agent.lifecycle import Phase
from tests.e2e.test_lifecycle import Harness, control_plane, statuses
from tests.support.waiting import wait_until

# Blocks until the test creates the file "release" beside it.
BLOCKING = """#!/bin/sh
touch "$(dirname "$0")/started"
while [ ! -e "$(dirname "$0")/release" ]; do sleep 0.05; done
"""


class OneWorker(Harness):
    """An agent whose scheduler has a single worker, where one blocked job would starve everything else."""

    def config(self):
        config = super().config()
        return msgspec.structs.replace(config, agent=msgspec.structs.replace(config.agent, workers=1))


@pytest.fixture
def harness(request):
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    h = OneWorker(home, f"lane-{request.node.name}")
    yield h
    (home / "extensions" / "release").touch()
    h.dispose()


def test_a_blocked_script_does_not_hold_the_outbox_or_the_scheduler_and_the_order_is_kept(harness):
    extensions = harness.home / "extensions"
    script = extensions / "InstanceStartedEvent.sh"
    script.write_text(BLOCKING)
    script.chmod(0o755)
    simulator, transport = control_plane(harness)
    agent = harness.start()
    try:
        assert wait_until((extensions / "started").exists, timeout=20)
        # Queued in the outbox before the script started; the outbox drains on the scheduler's worker.
        assert wait_until(lambda: "CompleteApplicationSignUpsRequestEvent" in simulator.received), \
            simulator.received
        ticked = []
        harness.runtime.scheduler.call_later(0, lambda: ticked.append(True), name="probe")
        assert wait_until(lambda: ticked)
        assert statuses(simulator) == []  # InstanceStartedEvent follows its extension
        (extensions / "release").touch()
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20)
        assert wait_until(lambda: statuses(simulator) == ["InstanceStartedEvent", "InstanceActivatedEvent"])
    finally:
        transport.close()
        simulator.close()
