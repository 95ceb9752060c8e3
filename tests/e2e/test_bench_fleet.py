"""``bench/fleet.py`` runs end to end with a tiny fleet: the shape of its result, and no event lost.

It starts its own broker, host processes of real agents (one with one agent, one with two), the control
plane, and then the same with bare clients of the transport's library. Never the figures (they are the
benchmark's, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"transport", "agents", "per_process", "members", "snapshot_bytes", "events", "rate", "p50_ms",
        "p99_ms", "snapshot_apply_p99_ms", "agent_cpu_idle_pct", "rss_per_agent_mb", "broker_cpu_pct",
        "agent_cpu_us_per_delivery", "lost", "baseline_p50_ms", "baseline_p99_ms",
        "baseline_snapshot_apply_p99_ms", "baseline_lost", "baseline_cpu_us_per_delivery",
        "baseline_rss_per_client_mb", "baseline_cpu_idle_pct", "ratio_cpu_vs_baseline"}


@pytest.mark.parametrize("transport", ["mqtt", "amqp", "kafka"])
def test_a_tiny_fleet_reports_every_figure_and_every_agent_gets_every_event(transport: str) -> None:
    command = [sys.executable, str(ROOT / "bench" / "fleet.py"), "--transport", transport, "--agents", "3",
               "--per-process", "2", "--members", "200", "--events", "40", "--rate", "100", "--idle", "1",
               "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert not KEYS - figures.keys(), f"missing: {KEYS - figures.keys()}"
    shape = (figures["transport"], figures["agents"], figures["per_process"], figures["members"],
             figures["events"])
    assert shape == (transport, 3, 2, 200, 40)
    assert figures["lost"] == 0 and figures["baseline_lost"] == 0
