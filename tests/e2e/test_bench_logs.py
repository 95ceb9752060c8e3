"""``bench/logs.py`` runs end to end with tiny numbers: the shape of its result, and nothing lost.

It starts its own receiver process and both senders. Never the figures or the ratio (they are the
benchmark's, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"sink", "lines", "rounds", "line_bytes", "raw_lines_per_s", "pca_lines_per_s", "ratio_thrift_vs_raw",
        "lost_lines", "duplicate_lines", "errors", "raw_cpu_s", "raw_receiver_cpu_s", "pca_cpu_s",
        "pca_receiver_cpu_s"}


def test_a_tiny_log_run_reports_every_figure_and_loses_no_line_across_the_rotation() -> None:
    command = [sys.executable, str(ROOT / "bench" / "logs.py"), "--lines", "2000", "--rounds", "1", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert not KEYS - figures.keys(), f"missing: {KEYS - figures.keys()}"
    assert (figures["sink"], figures["lines"], figures["rounds"]) == ("thrift", 2000, 1)
    assert (figures["lost_lines"], figures["errors"]) == (0, 0)
