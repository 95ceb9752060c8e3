"""SIGHUP stops ``pca run`` gracefully, saying that a reload is not supported and what to do instead."""

from __future__ import annotations

import shutil
import signal
import tempfile

from tests.support.configs import PAYLOAD_TOML
from tests.support.process import PcaProcess


def test_sighup_stops_the_agent_gracefully_with_exit_0_and_says_why(tmp_path):
    state = tempfile.mkdtemp(prefix="pca-", dir="/tmp")  # short: the control socket lives there
    path = tmp_path / "agent.toml"
    path.write_text(f'[transport]\nplugin = "memory"\n[agent]\nshutdown_timeout = 5\nstate_dir = "{state}"\n'
                    + PAYLOAD_TOML)
    agent = PcaProcess("run", "--config", str(path))
    try:
        agent.wait_for("agent running")
        agent.proc.send_signal(signal.SIGHUP)
        assert agent.finish() == 0
    finally:
        agent.kill()
        shutil.rmtree(state, ignore_errors=True)
    assert "SIGHUP: reloading the configuration is not supported" in agent.output
    assert "transport closed" in agent.output
    assert agent.output.rstrip().endswith("stopped")
    assert "Traceback" not in agent.output
