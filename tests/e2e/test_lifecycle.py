"""The agent's whole lifecycle, against a simulated or hand-driven control plane.

Every test runs four times: on the in-process ``memory`` transport, over a Mosquitto of its own with
``pca-mqtt``, over the session's RabbitMQ node with ``pca-amqp``, and over a Tansu (Kafka protocol) of its
own with ``pca-kafka``. Over AMQP, a control plane that must
not miss what the agent publishes during a broker outage subscribes through RabbitMQ's MQTT plugin with a
persistent session, as a Stratos control plane speaking MQTT would: RabbitMQ keeps its queue, where an
AMQP topic subscription's queue ends with its link.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pca_core.agent import control
from pca_core.agent.lifecycle import Agent, Phase
from pca_core.api.artifact_repo import ArtifactRepo, RepoSpec, SyncResult
from pca_core.api.transport import Message, Transport
from pca_core.cli.simulator import Simulator
from pca_core.config import ArtifactsConfig, TransportConfig, build
from pca_core.runtime import discovery
from pca_core.runtime.runtime import Runtime
from pca_core.stratos import events
from pca_core.testing import Broker, build_plugin
from pca_core.testing.memory import MemoryBroker
from tests.support.mosquitto import Mosquitto
from tests.support.rabbitmq import RabbitMQ
from tests.support.waiting import wait_until

FAST_RECONNECT = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
"""The reconnect delays for tests (the default schedule starts at 2 s)."""

RECORDER = """#!/bin/sh
env | grep '^STRATOS_' | sort > "$(dirname "$0")/../ran/$STRATOS_EVENT.env"
"""
EXTENSION_EVENTS = ("InstanceStartedEvent", "StartServers", "InstanceActivatedEvent", "clean",
                    "CompleteTopologyEvent", "ArtifactUpdatedEvent", "MemberActivatedEvent",
                    "CompleteTenantEvent", "DomainMappingAddedEvent")


class Harness:
    """An agent with its own state dir, application port, extensions and broker.

    The broker is a memory bus named ``bus`` unless another is given, with the transport plugin that
    reaches it, that plugin's options and more ``[transport]`` settings.
    """

    def __init__(self, home: Path, bus: str | None = None, *, broker: Broker | None = None,
                 plugin: str = "memory", options: dict | None = None, settings: dict | None = None,
                 agent: dict | None = None, **payload: str) -> None:
        self.home = home
        self.broker = broker or MemoryBroker(bus)
        self.bus = getattr(self.broker, "bus", None)
        self.plugin = plugin
        self.options = options or {}
        self.settings = settings or {}
        self.agent_settings = agent or {}
        self.application = socket.create_server(("127.0.0.1", 0))
        self.port = self.application.getsockname()[1]
        extensions = home / "extensions"
        extensions.mkdir(exist_ok=True)
        (home / "ran").mkdir(exist_ok=True)
        for name in EXTENSION_EVENTS:
            script = extensions / f"{name}.sh"
            script.write_text(RECORDER)
            script.chmod(0o755)
        self.payload = {
            "APPLICATION_ID": "app-1", "SERVICE_NAME": "php", "CLUSTER_ID": "php.domain",
            "MEMBER_ID": "php.member-1", "INSTANCE_ID": "instance-1", "CLUSTER_INSTANCE_ID": "php-1",
            "NETWORK_PARTITION_ID": "np-1", "PARTITION_ID": "p-1", "PORTS": str(self.port),
            "MULTITENANT": "false", "TENANT_ID": "-1234", "APPLICATION_PATH": str(home / "app"),
            "CUSTOM_PARAM": "custom value", **payload}
        self.stop = threading.Event()
        self.runtime: Runtime | None = None
        self.agent: Agent | None = None

    def config(self):
        tree = {"transport": {"plugin": self.plugin, "urls": [self.broker.url], "options": self.options,
                              **self.settings},
                "agent": {"state_dir": str(self.home / "state"), "listen_address": "127.0.0.1",
                          "extensions_dir": str(self.home / "extensions"), "shutdown_timeout": 5,
                          **self.agent_settings},
                "payload": self.payload}
        return build(json.loads(json.dumps(tree)), source="test", environ={})

    def start(self, artifact_repo: ArtifactRepo | None = None) -> Agent:
        self.stop = threading.Event()
        self.runtime = Runtime(self.config(), source="test")
        self.runtime.artifact_repo = artifact_repo
        self.runtime.load()
        self.agent = Agent(self.runtime, self.stop)
        assert self.agent.start()
        return self.agent

    def shutdown(self) -> None:
        if self.runtime is not None:
            assert self.runtime.stop(10)
            self.runtime = None

    def dispose(self) -> None:
        """Stops the agent and releases the application's port, a memory broker and the home directory."""
        self.shutdown()
        self.application.close()
        if isinstance(self.broker, MemoryBroker):
            self.broker.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def ran(self, event: str) -> dict[str, str]:
        path = self.home / "ran" / f"{event}.env"
        lines = path.read_text().splitlines() if path.exists() else []
        return dict(line.split("=", 1) for line in lines)

    @property
    def socket_path(self) -> Path:
        return self.home / "state" / "control.sock"

    def transport(self, *, persistent: bool = False) -> Transport:
        """Another client of the agent's broker, connected; ``persistent`` keeps its session over outages."""
        config = self.config().transport
        options = dict(self.options)
        if persistent and isinstance(self.broker, RabbitMQ):
            config = TransportConfig(plugin="mqtt", urls=(f"mqtt://guest:guest@127.0.0.1:{self.broker.mqtt_port}",),
                                     client_id=f"plane-{uuid.uuid4().hex[:12]}", **FAST_RECONNECT)
            options = {"persistent_session": True}
            cls = discovery.load_plugin(discovery.TRANSPORTS, "mqtt")
            transport = build_plugin(cls, msgspec.structs.replace(config, options=options), key="transport")
            transport.connect(timeout=10)
            return transport
        if persistent and self.plugin == "mqtt":
            options["persistent_session"] = True
            config = msgspec.structs.replace(config, client_id=f"plane-{uuid.uuid4().hex[:12]}")
        elif self.plugin == "kafka":  # a consumer group of its own, not the agent's
            config = msgspec.structs.replace(config, client_id=f"plane-{uuid.uuid4().hex[:12]}")
        cls = discovery.load_plugin(discovery.TRANSPORTS, self.plugin)
        transport = build_plugin(cls, msgspec.structs.replace(config, options=options), key="transport")
        transport.connect(timeout=10)
        return transport


@pytest.fixture(params=["memory", "mqtt", "amqp", "kafka"])
def harness(request) -> Iterator[Harness]:
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    if request.param == "memory":
        h = Harness(home, f"lifecycle-{request.node.name}")
    elif request.param == "amqp":
        rabbitmq = request.getfixturevalue("rabbitmq")
        rabbitmq.start()  # the session's node; a test may stop it, and leaves it running
        h = Harness(home, broker=rabbitmq, plugin="amqp", settings=FAST_RECONNECT)
    elif request.param == "kafka":
        # A topic the control plane creates after the agent started is noticed within 0.2 s.
        h = Harness(home, broker=request.getfixturevalue("tansu"), plugin="kafka",
                    options={"metadata_max_age": 0.2}, settings=FAST_RECONNECT)
    else:
        # Persistence on: a persistent session's queued messages survive the broker's restart.
        broker = Mosquitto(home / "mosquitto", extra=("persistence true",
                                                      f"persistence_location {home / 'mosquitto'}/"))
        broker.start()
        h = Harness(home, broker=broker, plugin="mqtt", settings=FAST_RECONNECT)
    yield h
    h.shutdown()
    h.application.close()
    if isinstance(h.broker, MemoryBroker):
        h.broker.close()
    elif isinstance(h.broker, Mosquitto):
        h.broker.stop()
    elif isinstance(h.broker, RabbitMQ):
        h.broker.start()  # the session's node stays up; a Tansu fixture stops its own broker
    shutil.rmtree(home, ignore_errors=True)


def control_plane(h: Harness, *, cleanup: bool = False) -> tuple[Simulator, Transport]:
    transport = h.transport()
    simulator = Simulator(transport, h.config().identity, cleanup_after_activation=cleanup,
                          say=lambda text: None)
    simulator.start()
    return simulator, transport


STATUS = ["InstanceStartedEvent", "InstanceActivatedEvent", "InstanceMaintenanceModeEvent",
          "InstanceReadyToShutdownEvent"]


def statuses(simulator: Simulator) -> list[str]:
    return [name for name in simulator.received if name in STATUS]


def test_start_activation_and_cleanup_each_status_once_with_the_extension_values(harness):
    simulator, transport = control_plane(harness, cleanup=True)
    agent = harness.start()
    assert simulator.ready_to_shutdown.wait(20), simulator.received
    assert wait_until(lambda: agent.phase is Phase.READY_TO_SHUTDOWN)
    assert simulator.received[:3] == ["CompleteTopologyRequestEvent", "CompleteTenantRequestEvent",
                                      "CompleteApplicationSignUpsRequestEvent"]
    assert statuses(simulator) == STATUS
    started = harness.ran("InstanceStartedEvent")
    assert started["STRATOS_EVENT"] == "InstanceStartedEvent"
    assert started["STRATOS_MEMBER_ID"] == "php.member-1"
    assert started["STRATOS_CLUSTER_ID"] == "php.domain"
    assert started["STRATOS_PORTS"] == str(harness.port)
    assert started["STRATOS_CUSTOM_PARAM"] == "custom value"
    assert started["STRATOS_APPLICATION_PATH"] == str(harness.home / "app")
    for event in ("StartServers", "InstanceActivatedEvent", "clean", "CompleteTopologyEvent"):
        assert harness.ran(event)["STRATOS_EVENT"] == event
    assert "php.member-1" in harness.ran("CompleteTopologyEvent")["STRATOS_MEMBER_LIST_JSON"]
    transport.close()
    simulator.close()


def test_activation_waits_for_the_ports_and_a_later_success_still_activates(harness):
    harness.application.close()  # the application is not listening yet
    simulator, transport = control_plane(harness)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVATING)
    assert "InstanceActivatedEvent" not in simulator.received
    harness.application = socket.create_server(("127.0.0.1", harness.port))
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: statuses(simulator) == STATUS[:2])
    transport.close()
    simulator.close()


def snapshot(status_stack: list[str], others: int = 0) -> events.CompleteTopologyEvent:
    """The agent's member with the statuses of ``status_stack``, and ``others`` members just created."""
    ids = {"service_name": "php", "cluster_id": "php.domain", "cluster_instance_id": "php-1"}
    members = {}
    for n in range(1, 2 + others):
        manager = events.MemberStatusStateManager(state_stack=status_stack if n == 1 else ["Created"])
        members[f"php.member-{n}"] = events.Member(**ids, member_id=f"php.member-{n}",
                                                   member_state_manager=manager)
    cluster = events.Cluster(service_name="php", cluster_id="php.domain", member_map=members)
    return events.CompleteTopologyEvent(topology=events.Topology(service_map={"php": events.Service(
        service_name="php", cluster_id_cluster_map={"php.domain": cluster})}))


class HandDriven:
    """A control plane that answers the topology request with a given snapshot and records the rest."""

    def __init__(self, h: Harness, stack: list[str], others: int = 0) -> None:
        self.transport = h.transport(persistent=True)
        self.received: list[str] = []
        self.stack = stack
        self.others = others
        self.transport.subscribe("instance/status/#", self.record)
        self.transport.subscribe("initializer/CompleteTopologyRequestEvent", self.answer)

    def record(self, message: Message) -> None:
        # Handled here, not by a dispatcher, so acknowledged here: else a persistent session redelivers it.
        self.received.append(message.topic.split("/")[-1])
        message.ack()

    def answer(self, message: Message) -> None:
        self.send(snapshot(self.stack, self.others))
        message.ack()

    def send(self, event: events.Event) -> None:
        threading.Thread(target=self.transport.publish, args=(event.TOPIC, events.encode(event))).start()


def test_a_control_plane_that_starts_after_the_first_request_still_activates_the_member(harness, caplog):
    harness.agent_settings["topology_request_interval"] = 0.2
    listener = harness.transport()  # only watches: nothing answers the requests yet
    requests: list[str] = []
    listener.subscribe(events.CompleteTopologyRequestEvent.TOPIC, lambda msg: requests.append(msg.topic))
    agent = harness.start()
    assert wait_until(lambda: len(requests) >= 1)
    simulator, transport = control_plane(harness)
    assert wait_until(lambda: agent.phase is Phase.ACTIVE), agent.phase
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("waiting for the complete topology" in text for text in warnings), warnings
    listener.close()
    transport.close()
    simulator.close()


def test_status_says_what_the_agent_waits_for(harness):
    harness.agent_settings["topology_request_interval"] = 0.2
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_TOPOLOGY)

    def waiting_for() -> str:
        return control.call(harness.socket_path, "status")["waiting_for"] or ""

    assert wait_until(lambda: re.fullmatch(r"the complete topology from the control plane \(requested [2-9] "
                                           r"times since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)", waiting_for()))
    plane = HandDriven(harness, ["Created"])
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_INITIALIZATION)
    assert waiting_for().startswith("member php.member-1 to be initialized: it is Created in the topology")
    plane.stack = ["Created", "Initialized"]
    plane.send(snapshot(plane.stack))
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert control.call(harness.socket_path, "status")["waiting_for"] is None
    plane.transport.close()


def test_while_the_member_is_awaited_other_members_events_post_no_initialization_check(harness, caplog):
    caplog.set_level(logging.INFO, logger="pca_core")
    plane = HandDriven(harness, ["Created"], others=4)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_INITIALIZATION)
    topology = agent.state.topology
    ids = {"service_name": "php", "cluster_id": "php.domain", "cluster_instance_id": "php-1"}
    for other in ("php.member-2", "php.member-3", "php.member-4", "php.member-5"):
        for event, status in [(events.MemberInitializedEvent, "Initialized"),
                              (events.MemberStartedEvent, "Starting")]:
            plane.send(event(**ids, member_id=other))
            assert wait_until(lambda other=other, status=status: topology.member_status(other) == status)
    plane.send(events.MemberInitializedEvent(**ids, member_id="php.member-1"))
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    # The snapshot's check says it once; a second time at most, when the lane ran that check before the
    # snapshot's last structural change was told. Each of the 8 other events had added one.
    waits = [r.getMessage() for r in caplog.records if "waiting for it to be initialized" in r.getMessage()]
    assert len(waits) <= 2, waits
    plane.transport.close()


def test_a_restart_on_an_active_member_publishes_nothing_again(harness):
    plane = HandDriven(harness, ["Created", "Initialized", "Starting", "Active"])
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert plane.received == []
    assert harness.ran("InstanceStartedEvent") == {} and harness.ran("StartServers") == {}
    plane.transport.close()


def test_a_restart_on_a_member_in_maintenance_returns_it_to_service(harness):
    plane = HandDriven(harness, ["Created", "Initialized", "Starting", "Active", "In_Maintenance"])
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: plane.received == ["InstanceActivatedEvent"])
    plane.transport.close()


def test_a_missed_member_initialized_event_is_repaired_by_a_later_snapshot(harness):
    plane = HandDriven(harness, ["Created"])
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_INITIALIZATION)
    plane.stack = ["Created", "Initialized"]
    plane.send(snapshot(plane.stack))
    assert wait_until(lambda: plane.received[:2] == ["InstanceStartedEvent", "InstanceActivatedEvent"])
    plane.transport.close()


def test_other_members_events_run_their_extensions(harness):
    simulator, transport = control_plane(harness)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(
        lambda: harness.ran("MemberActivatedEvent").get("STRATOS_EVENT_MEMBER_ID") == "php.member-1")
    transport.close()
    simulator.close()


def test_maintenance_on_and_off_through_the_control_socket(harness):
    simulator, transport = control_plane(harness)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: control.call(harness.socket_path, "status")["outbox_depth"] == 0)
    status = control.call(harness.socket_path, "status")
    assert status["phase"] == "active"
    assert status["transport"] == "connected"
    control.call(harness.socket_path, "maintenance", mode="on")
    assert wait_until(lambda: agent.phase is Phase.MAINTENANCE)
    assert wait_until(lambda: statuses(simulator)[-1:] == ["InstanceMaintenanceModeEvent"])
    control.call(harness.socket_path, "maintenance", mode="off")
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: statuses(simulator) == [*STATUS[:3], "InstanceActivatedEvent"])
    transport.close()
    simulator.close()


def test_maintenance_on_with_stop_publishes_then_asks_to_stop(harness):
    simulator, transport = control_plane(harness)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    control.call(harness.socket_path, "maintenance", mode="on", stop=True)
    assert harness.stop.wait(10)
    harness.shutdown()  # returns once the broker accepted the event; the simulator gets it a little later
    assert wait_until(lambda: statuses(simulator)[-1:] == ["InstanceMaintenanceModeEvent"])
    transport.close()
    simulator.close()


def test_a_broker_outage_delays_status_events_and_loses_none(harness):
    harness.application.close()  # activation waits for the port, so the broker can go down before it
    plane = HandDriven(harness, ["Created", "Initialized"])
    agent = harness.start()
    assert wait_until(lambda: plane.received == ["InstanceStartedEvent"])
    harness.broker.stop()
    harness.application = socket.create_server(("127.0.0.1", harness.port))  # the agent may activate now
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: agent.outbox.depth == 1)  # InstanceActivatedEvent, waiting for the broker
    assert plane.received == ["InstanceStartedEvent"]
    harness.broker.start()
    both = ["InstanceStartedEvent", "InstanceActivatedEvent"]
    assert wait_until(lambda: plane.received == both, timeout=20)
    assert wait_until(lambda: agent.outbox.depth == 0)
    plane.transport.close()


def test_an_agent_restart_does_not_publish_a_transition_twice(harness, caplog):
    plane = HandDriven(harness, ["Created", "Initialized"])
    agent = harness.start()
    assert wait_until(lambda: plane.received == ["InstanceStartedEvent", "InstanceActivatedEvent"])
    harness.shutdown()
    agent = harness.start()  # same state dir; the control plane still says Initialized (stale)
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert plane.received == ["InstanceStartedEvent", "InstanceActivatedEvent"]
    # Said loudly, with the file to look at: a stale state dir would keep a re-used member from activating.
    outbox = str(harness.home / "state" / "outbox.sqlite")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(outbox in text and "InstanceStartedEvent:php.member-1" in text for text in warnings), warnings
    plane.transport.close()


class FakeRepo(ArtifactRepo):
    """An artifact repository that records what it was asked and writes one file."""

    def __init__(self) -> None:
        super().__init__(ArtifactsConfig(), None)
        self.specs: list[RepoSpec] = []

    def sync(self, spec: RepoSpec) -> SyncResult:
        self.specs.append(spec)
        Path(spec.path).mkdir(parents=True, exist_ok=True)
        (Path(spec.path) / "index.php").write_text("<?php echo 'hi';")
        return SyncResult(changed=True, revision="abc123", previous=None)

    def commit_and_push(self, spec: RepoSpec, message: str) -> str | None:
        return None

    def remove(self, spec: RepoSpec) -> None:
        shutil.rmtree(spec.path)


def test_with_a_repository_activation_follows_the_first_checkout(harness):
    harness.payload.update(REPO_URL="https://git.example.org/app.git", CARTRIDGE_KEY="tvnw63ufg9gh5111")
    repo = FakeRepo()
    plane = HandDriven(harness, ["Created", "Initialized"])
    agent = harness.start(artifact_repo=repo)
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_ARTIFACTS)
    assert wait_until(lambda: plane.received == ["InstanceStartedEvent"])
    plane.send(events.ArtifactUpdatedEvent(cluster_id="other.domain", repo_url="https://x/y.git"))
    plane.send(events.ArtifactUpdatedEvent(
        cluster_id="php.domain", repo_url="https://git.example.org/app.git", repo_user_name="deployer",
        repo_password="jP1lZ5xMlpLzu8MbY2Porg==", tenant_id="-1234", status="Updated"))
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(lambda: plane.received == ["InstanceStartedEvent", "InstanceActivatedEvent"])
    (spec,) = repo.specs
    assert spec.path == str(harness.home / "app")
    assert spec.password is not None and spec.password.reveal() == "plaintext"
    assert harness.ran("ArtifactUpdatedEvent")["STRATOS_ARTIFACT_UPDATED_REVISION"] == "abc123"
    assert control.call(harness.socket_path, "status")["artifact_revision"] == "abc123"
    plane.transport.close()


def test_tenant_and_domain_mapping_extensions(harness):
    simulator, transport = control_plane(harness)
    agent = harness.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE)
    assert wait_until(
        lambda: "carbon.super" in harness.ran("CompleteTenantEvent").get("STRATOS_TENANT_LIST_JSON", ""))
    # A mapping counts once the complete sign-ups arrived (Stratos drops it before, as the agent does); the
    # sign-ups answer is another topic, which no transport orders with the test's own publish.
    assert wait_until(lambda: agent.state.domain_mappings.initialized)
    mapping = events.DomainMappingAddedEvent(application_id="app-1", tenant_id=-1234, service_name="php",
                                             cluster_id="php.domain", domain_name="shop.example.org",
                                             context_path="/shop")
    transport.publish(mapping.TOPIC, events.encode(mapping))
    assert wait_until(lambda: harness.ran("DomainMappingAddedEvent").get("STRATOS_SUBSCRIPTION_DOMAIN_NAME")
                      == "shop.example.org")
    values = harness.ran("DomainMappingAddedEvent")
    assert values["STRATOS_SUBSCRIPTION_TENANT_DOMAIN"] == "carbon.super"
    assert values["STRATOS_SUBSCRIPTION_CONTEXT_PATH"] == "/shop"
    assert values["STRATOS_SUBSCRIPTION_TENANT_ID"] == "-1234"
    transport.close()
    simulator.close()
