"""An unmodified legacy agent.conf over Mosquitto on localhost:1883: ``pca run`` against ``pca simulate``.

The agent starts, checks the application out of a git daemon, activates, and cleans up when told.

Both are separate processes, as an operator would run them. The agent.conf is the original
distribution's, byte for byte; only the payload (its member and port), the state and application
directories (environment overrides) differ per test.
"""

from __future__ import annotations

import shutil
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support import thrift_stand_in
from tests.support.gitserver import GitDaemon, Upstream
from tests.support.ports import accepts
from tests.support.process import PcaProcess

LEGACY = ROOT / "examples" / "legacy"

@pytest.fixture(scope="module")
def localhost_1883() -> Iterator[None]:
    """The Mosquitto the legacy file points at: the machine's own, or one started on 1883 if none runs."""
    if accepts(1883):
        yield
        return
    from tests.support.mosquitto import Mosquitto

    broker = Mosquitto(port=1883)
    broker.start()
    try:
        yield
    finally:
        broker.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[GitDaemon, Upstream]]:
    """The application's repository, served by a git daemon."""
    served = tmp_path / "served"
    served.mkdir()
    repository = Upstream(served, "app.git", {"index.php": "<?php echo 'v1';"})
    with GitDaemon(served) as daemon:
        yield daemon, repository


@pytest.fixture
def operator(tmp_path: Path, localhost_1883, upstream):
    """An agent.conf copied unmodified, a payload for a member of its own, and the environment to run it."""
    home = Path(shutil.copytree(LEGACY, tmp_path / "legacy"))
    assert (home / "agent.conf").read_bytes() == (LEGACY / "agent.conf").read_bytes()
    application = socket.create_server(("127.0.0.1", 0))
    member = f"php.member-{uuid.uuid4().hex[:8]}"  # the broker is shared: a member of our own
    params = (LEGACY / "payload" / "launch-params").read_text()
    params = params.replace("MEMBER_ID=php.member-1", f"MEMBER_ID={member}")
    params = params.replace("PORTS=8080", f"PORTS={application.getsockname()[1]}")
    daemon, repository = upstream
    repo_url = daemon.url(repository.name)
    params += f",REPO_URL={repo_url},CARTRIDGE_KEY=tvnw63ufg9gh5111"
    (home / "payload" / "launch-params").write_text(params)

    env = thrift_stand_in.install(tmp_path)  # the legacy file enables health statistics to Thrift
    env |= {"PCA_AGENT__STATE_DIR": str(tmp_path / "state"),
            "PCA_AGENT__APPLICATION_PATH": str(tmp_path / "www"),
            "THRIFT_STAND_IN_FILE": str(tmp_path / "health.jsonl")}
    args = ("--config", str(home / "agent.conf"), "--payload", str(home / "payload" / "launch-params"))

    class Operator:
        url = repo_url
        www = tmp_path / "www"

        def run(self, command: str, *extra: str) -> PcaProcess:
            return PcaProcess(command, *args, *extra, env=env)

    yield Operator()
    application.close()


def test_startup_artifacts_activation_and_cleanup_against_pca_simulate(operator):
    simulator = operator.run("simulate", "--cleanup-after-activation", "--repo-url", operator.url)
    agent = None
    try:
        simulator.wait_for("simulating the control plane for member")
        agent = operator.run("run")
        simulator.wait_for("instance/status/InstanceStartedEvent")
        simulator.wait_for("instance/status/InstanceActivatedEvent")  # after the first checkout
        assert (operator.www / "index.php").read_text() == "<?php echo 'v1';"
        simulator.wait_for("instance/status/InstanceReadyToShutdownEvent")
        assert simulator.finish() == 0
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.output
        assert "Traceback" not in agent.output + simulator.output
        assert "manager" not in agent.output  # mb.password
    finally:
        simulator.kill()
        if agent is not None:
            agent.kill()
