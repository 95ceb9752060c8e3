"""An unmodified legacy agent.conf over Mosquitto on localhost:1883: ``pca run`` against ``pca simulate``.

The agent starts, checks the application out of a git daemon, activates, and cleans up when told; it
sends its health statistics to the databridge receiver the file names, localhost:7711, with pca-thrift.

Both are separate processes, as an operator would run them. The agent.conf is the original
distribution's, byte for byte; only the payload (its member and port, the receiver's CA), the state and
application directories and the health interval (environment overrides) differ per test. One test turns
log publishing on, the one key an operator changes for that.
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
from tests.support.databridge import DatabridgeReceiver
from tests.support.dists import pca_env
from tests.support.gitserver import GitDaemon, Upstream
from tests.support.ports import accepts
from tests.support.process import PcaProcess
from tests.support.waiting import wait_until

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
def localhost_7711(server_cert) -> Iterator[DatabridgeReceiver]:
    """The databridge receiver the legacy file points at: TLS on 7711, data on 7611, user admin/admin."""
    for port in (7611, 7711):
        if accepts(port):
            pytest.fail(f"port {port} is taken: the legacy agent.conf's databridge receiver listens there")
    with DatabridgeReceiver(server_cert, port=7611) as receiver:
        yield receiver


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[GitDaemon, Upstream]]:
    """The application's repository, served by a git daemon."""
    served = tmp_path / "served"
    served.mkdir()
    repository = Upstream(served, "app.git", {"index.php": "<?php echo 'v1';"})
    with GitDaemon(served) as daemon:
        yield daemon, repository


@pytest.fixture
def operator(tmp_path: Path, localhost_1883, localhost_7711, upstream, test_ca):
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
    # The receiver's certificate is signed by the tests' CA (a WSO2 server's by its own); log lines come
    # from a file of the test's own (agent.conf leaves log.file.paths empty, so the payload's counts).
    log_file = tmp_path / "app.log"
    params += (f",REPO_URL={repo_url},CARTRIDGE_KEY=tvnw63ufg9gh5111,thrift.tls.ca.file={test_ca.ca_file},"
               f"log.file.paths={log_file}")
    (home / "payload" / "launch-params").write_text(params)

    env = pca_env(cache=tmp_path / "cache")
    env |= {"PCA_AGENT__STATE_DIR": str(tmp_path / "state"),
            "PCA_AGENT__APPLICATION_PATH": str(tmp_path / "www"),
            "PCA_HEALTH__INTERVAL": "1"}
    args = ("--config", str(home / "agent.conf"), "--payload", str(home / "payload" / "launch-params"))

    class Operator:
        url = repo_url
        www = tmp_path / "www"
        agent_conf = home / "agent.conf"
        receiver = localhost_7711
        log = log_file
        member_id = member

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


def test_health_statistics_and_log_lines_reach_the_databridge_receiver(operator):
    conf = operator.agent_conf
    conf.write_text(conf.read_text().replace("enable.data.publisher=false", "enable.data.publisher=true"))
    operator.log.write_text("")
    simulator = operator.run("simulate", "--repo-url", operator.url)
    agent = None
    try:
        simulator.wait_for("simulating the control plane for member")
        agent = operator.run("run")
        simulator.wait_for("instance/status/InstanceActivatedEvent")
        with operator.log.open("a") as log:
            log.write("GET /index.php 200\nGET /missing 404\n")
        receiver = operator.receiver

        def lines() -> list[str]:
            return [e.payload["message"] for e in receiver.events if e.stream_id.startswith(
                "logs.0.php.php.domain.") and e.meta["memberId"] == operator.member_id]

        def health() -> set[str]:
            return {e.payload["health_description"] for e in receiver.events
                    if e.stream_id == "cartridge_agent_health_stats:1.0.0"
                    and e.payload["member_id"] == operator.member_id}

        assert wait_until(lambda: len(lines()) >= 2, 30), (receiver.events, agent.output)
        assert lines() == ["GET /index.php 200", "GET /missing 404"]
        assert wait_until(lambda: health() == {"memory_consumption", "load_average"}, 30), agent.output
        assert receiver.errors == []
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.output
        assert "admin" not in agent.output.replace("admin.", "")  # the receiver's password
        assert receiver.logouts >= 1
    finally:
        simulator.kill()
        if agent is not None:
            agent.kill()
