"""``bench/soak.py --quick`` runs end to end: a real agent process, a real Mosquitto, the whole workload.

Only the shape of the result is checked, never its figures (they are the benchmark's, not a test's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"rss_growth_mb", "threads_growth", "fds_growth", "max_log_line_bytes", "uncaught", "exit_code",
        "shutdown_s", "shutdown_within_timeout", "sent"}


def test_quick_soak_reports_every_figure_and_the_agent_exits_cleanly() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert not KEYS - figures.keys(), f"missing: {KEYS - figures.keys()}"
    assert figures["exit_code"] == 0
    assert figures["sent"] > figures["messages"]  # the corpus and the oversize messages went out too
