"""The starter configuration of ``pca config init`` runs the demo lifecycle as it is, against pca simulate.

Only the broker's URL (a private Mosquitto on a free port instead of 127.0.0.1:1883) and the member's port
(one the test listens on, as the application would) are rewritten in the generated file; the state
directory comes from the environment, as an operator overrides it. The agent and the simulated control
plane are separate ``pca`` processes.
"""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
from pathlib import Path

from pca_core.cli.init import STARTER_URL
from tests.support.dists import pca_env, run_pca
from tests.support.mosquitto import Mosquitto
from tests.support.process import PcaProcess


def test_the_starter_configuration_runs_the_demo_lifecycle_against_pca_simulate(tmp_path: Path):
    generated = run_pca("config", "init")
    assert generated.returncode == 0, generated.stderr
    assert f'urls = ["{STARTER_URL}"]' in generated.stdout and 'PORTS = "8080"' in generated.stdout
    state = tempfile.mkdtemp(prefix="pca-", dir="/tmp")  # short: the control socket lives there
    with Mosquitto(tmp_path / "broker") as broker, socket.create_server(("127.0.0.1", 0)) as application:
        port = application.getsockname()[1]
        path = tmp_path / "agent.toml"
        path.write_text(generated.stdout.replace(STARTER_URL, broker.url)
                        .replace('PORTS = "8080"', f'PORTS = "{port}"'))
        env = pca_env(cache=tmp_path / "cache") | {"PCA_AGENT__STATE_DIR": state}
        simulator = PcaProcess("simulate", "--cleanup-after-activation", "--config", str(path), env=env)
        agent = None
        try:
            simulator.wait_for("simulating the control plane for member php.member-1")
            agent = PcaProcess("run", "--config", str(path), env=env)
            agent.wait_for("-> active")  # the lifecycle reports the member active
            simulator.wait_for("control  <- instance/status/InstanceActivatedEvent")
            simulator.wait_for("control  <- instance/status/InstanceReadyToShutdownEvent")
            assert simulator.finish() == 0  # it stops once the member is ready to shut down
            agent.proc.send_signal(signal.SIGTERM)
            assert agent.finish() == 0, agent.output
        finally:
            simulator.kill()
            if agent is not None:
                agent.kill()
            shutil.rmtree(state, ignore_errors=True)
    assert "Traceback" not in agent.output + simulator.output
    assert f"mqtt: connected to {broker.url}" in agent.output
