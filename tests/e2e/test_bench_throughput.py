"""``bench/amqp_throughput.py`` and ``bench/kafka_throughput.py`` run end to end with tiny numbers.

Each starts its own broker (a RabbitMQ node, a Tansu) and both receivers. Only the shape of the result is
checked, and that each receiver got every message put in for it; never the figures or the ratio (they are
the benchmark's, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"messages", "rounds", "raw_msgs_per_s", "pca_msgs_per_s", "ratio_pca_vs_raw", "threads_before",
        "threads_after", "raw_sent", "raw_received", "pca_sent", "pca_received"}


@pytest.mark.parametrize("script", ["amqp_throughput.py", "kafka_throughput.py"])
def test_a_tiny_throughput_run_reports_every_figure_for_all_its_messages(script: str) -> None:
    # The script waits up to 300 s for missing messages, then fails: beyond a broker's start, 420 s is enough.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--messages", "500", "--rounds", "1",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert not KEYS - figures.keys(), f"missing: {KEYS - figures.keys()}"
    assert (figures["messages"], figures["rounds"]) == (500, 1)
    assert figures["raw_received"] == figures["raw_sent"] == 500
    assert figures["pca_received"] == figures["pca_sent"] == 1000  # the timed drain, then the live burst
