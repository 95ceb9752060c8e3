"""``bench/logs.py`` runs end to end with tiny numbers: the shape of its result, and nothing lost.

It starts its own receiver process, both senders and, for the durability round, agent processes it
kills and restarts. Never the figures or the ratio (they are the benchmark's, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"sink", "lines", "rounds", "line_bytes", "raw_lines_per_s", "pca_lines_per_s", "lost_lines",
        "duplicate_lines", "durability_lines", "durability_lost_lines", "durability_duplicate_lines",
        "errors", "raw_cpu_s", "raw_receiver_cpu_s", "pca_cpu_s", "pca_receiver_cpu_s"}
SINK_KEYS = {"thrift": {"ratio_thrift_vs_raw"},
             "fluentd": {"ratio_fluentd_vs_raw", "ratio_fluentd_vs_raw_packed", "raw_packed_lines_per_s"}}


@pytest.mark.parametrize("sink", ["thrift", "fluentd"])
def test_a_tiny_log_run_reports_every_figure_and_loses_no_line(sink: str) -> None:
    command = [sys.executable, str(ROOT / "bench" / "logs.py"), "--sink", sink, "--lines", "2000", "--rounds",
               "1", "--durability-lines", "2000", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    missing = (KEYS | SINK_KEYS[sink]) - figures.keys()
    assert not missing, f"missing: {missing}"
    assert (figures["sink"], figures["lines"], figures["rounds"]) == (sink, 2000, 1)
    # Across the rotation of the throughput round, and the SIGKILL, receiver restart and copytruncate of
    # the durability round.
    assert (figures["lost_lines"], figures["durability_lost_lines"], figures["errors"]) == (0, 0, 0)
