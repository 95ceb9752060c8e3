"""The README's TOML example is a configuration that works: ``pca config check`` accepts it as written, and
an agent started with it (only the broker, the paths and the port pointed at this test's own) reaches
active against a simulated control plane, over the ``mqtt`` transport it names and a real Mosquitto.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import msgspec
import pytest

from pca_core.agent.lifecycle import Agent, Phase
from pca_core.cli.simulator import Simulator
from pca_core.config import build
from pca_core.runtime import discovery
from pca_core.runtime.runtime import Runtime
from pca_core.testing import build_plugin
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    (example,) = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return example


def test_config_check_accepts_the_readme_example(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(readme_example())
    result = subprocess.run([sys.executable, "-m", "pca_core", "config", "check", "--config", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'MEMBER_ID = "php.member-1"' in result.stdout


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "mosquitto") as running:
        yield running


def test_an_agent_with_the_readme_example_becomes_active(tmp_path, broker):
    tree = tomllib.loads(readme_example())
    application = socket.create_server(("127.0.0.1", 0))
    # What a test must point elsewhere: the brokers, the records file, the state dir and the port.
    tree["transport"]["urls"] = [broker.url]
    tree["publishers"][0]["options"]["path"] = str(tmp_path / "records.jsonl")
    tree["agent"] = {"state_dir": str(tmp_path / "state"), "listen_address": "127.0.0.1"}
    tree["payload"]["PORTS"] = str(application.getsockname()[1])
    config = build(tree, source="README.md", environ={})
    plane_config = msgspec.structs.replace(config.transport, client_id="control-plane")
    plane = build_plugin(discovery.load_plugin(discovery.TRANSPORTS, "mqtt"), plane_config, key="transport")
    plane.connect(timeout=10)
    simulator = Simulator(plane, config.identity, say=lambda text: None)
    simulator.start()
    runtime = Runtime(config, source="README.md")
    runtime.load()
    agent = Agent(runtime, threading.Event())
    try:
        assert agent.start()
        assert wait_until(lambda: agent.phase is Phase.ACTIVE, timeout=20), agent.phase
        assert wait_until(lambda: "InstanceActivatedEvent" in simulator.received)
    finally:
        assert runtime.stop(10)
        simulator.close()
        plane.close()
        application.close()
