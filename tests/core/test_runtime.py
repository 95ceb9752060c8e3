import json
import subprocess
import sys
import threading

import pytest

from pca_core.api.errors import ConfigErrors
from pca_core.builtin.memory import MemoryOptions, MemoryTransport
from pca_core.config import build
from pca_core.runtime.runtime import Runtime
from pca_core.stratos import events
from pca_core.stratos.topics import AGENT_SUBSCRIPTIONS
from tests.support.configs import PAYLOAD


def make_config(tmp_path, **sections):
    tree = {"transport": {"plugin": "memory", "options": {"bus": f"runtime-{tmp_path.name}"}},
            "payload": dict(PAYLOAD), **sections}
    return build(json.loads(json.dumps(tree)), source="test.toml", environ={})


def control_plane(cfg):
    transport = MemoryTransport(cfg.transport, MemoryOptions(**cfg.transport.options))
    transport.connect()
    return transport


def test_runtime_receives_the_agent_topics_on_the_dispatcher_thread(tmp_path):
    cfg = make_config(tmp_path)
    got = []
    three = threading.Semaphore(0)

    def on_message(message):
        got.append((message.topic, threading.current_thread().name))
        three.release()

    runtime = Runtime(cfg, on_message=on_message)
    assert runtime.start(threading.Event())
    peer = control_plane(cfg)
    for topic in ("topology/MemberActivatedEvent", "instance/status/InstanceStartedEvent",
                  "instance/notifier/ArtifactUpdatedEvent", "application/signup/ApplicationSignUpAddedEvent"):
        peer.publish(topic, b"{}")
    for _ in range(3):
        assert three.acquire(timeout=5)
    assert runtime.stop(5)
    assert [topic for topic, _ in got] == ["topology/MemberActivatedEvent",
                                           "instance/notifier/ArtifactUpdatedEvent",
                                           "application/signup/ApplicationSignUpAddedEvent"]
    assert {thread for _, thread in got} == {"pca-dispatcher"}
    peer.close()


def test_the_runtime_keeps_the_models_current_and_skips_a_malformed_event(tmp_path, caplog):
    cfg = make_config(tmp_path)
    runtime = Runtime(cfg)
    active = threading.Event()
    runtime.state.topology.observe(
        lambda change: active.set() if getattr(change, "new", None) == "Active" else None)
    assert runtime.start(threading.Event())
    peer = control_plane(cfg)
    ids = {"service_name": "php", "cluster_id": "php.domain", "member_id": "m-1"}
    member = events.Member(**ids, member_state_manager=events.MemberStatusStateManager(
        state_stack=["Created", "Initialized", "Starting"]))
    topology = events.Topology(service_map={"php": events.Service(
        service_name="php", cluster_id_cluster_map={"php.domain": events.Cluster(
            service_name="php", cluster_id="php.domain", member_map={"m-1": member})})})
    complete = events.CompleteTopologyEvent(topology=topology)
    peer.publish(complete.TOPIC, events.encode(complete))
    peer.publish("topology/MemberActivatedEvent", b'{"memberId": ["not", "a", "string"]}')
    peer.publish("topology/MemberActivatedEvent", events.encode(events.MemberActivatedEvent(
        **ids, default_private_ip="10.0.0.9", port_map={"80": events.Port(value=80, proxy=80)})))
    assert active.wait(5)
    assert runtime.stop(5)
    assert runtime.state.topology.member_status("m-1") == "Active"
    malformed = [r for r in caplog.records if "malformed event skipped" in r.getMessage()]
    assert len(malformed) == 1
    assert "topology/MemberActivatedEvent" in malformed[0].getMessage()
    peer.close()


def test_stop_lets_in_flight_work_finish_closes_plugins_and_leaves_no_thread(tmp_path):
    before = set(threading.enumerate())
    records = tmp_path / "records.jsonl"
    cfg = make_config(tmp_path, publishers=[{"plugin": "file", "options": {"path": str(records)}}])
    in_handler, finished = threading.Event(), threading.Event()

    def slow(message):
        in_handler.set()
        finished.wait(0.2)  # in-flight work that takes a moment; it must complete, not be cut off
        finished.set()

    runtime = Runtime(cfg, on_message=slow)
    assert runtime.start(threading.Event())
    ticks = threading.Semaphore(0)
    runtime.scheduler.every(0.001, ticks.release, name="tick")
    assert ticks.acquire(timeout=5)
    peer = control_plane(cfg)
    peer.publish("topology/X", b"{}")
    assert in_handler.wait(5)
    assert runtime.stop(10) is True
    assert finished.is_set()
    assert runtime.transport is not None
    assert runtime.transport.state.value == "closed"
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == []
    peer.close()


def test_a_stop_before_the_broker_is_reachable_returns_promptly(tmp_path):
    cfg = make_config(tmp_path)
    runtime = Runtime(cfg)
    stop = threading.Event()
    stop.set()
    assert runtime.start(stop) is False
    assert runtime.stop(5)


def test_an_unknown_transport_fails_at_load_naming_the_installed_ones(tmp_path):
    cfg = make_config(tmp_path, transport={"plugin": "nats"})
    with pytest.raises(ConfigErrors, match="installed: amqp, kafka, memory, mqtt") as info:
        Runtime(cfg).load()
    assert info.value.key == "transport.plugin"


def test_only_the_selected_plugins_are_loaded(tmp_path):
    runtime = Runtime(make_config(tmp_path))
    runtime.load()
    assert type(runtime.transport) is MemoryTransport
    assert runtime.publishers == [] and runtime.handlers == []


def test_the_subscriptions_are_the_stratos_roots():
    assert AGENT_SUBSCRIPTIONS == ("topology/#", "instance/notifier/#", "tenant/#", "domain/mapping/#",
                                   "application/signup/#")


def test_the_library_never_configures_logging():
    code = "\n".join([
        "import logging, threading",
        "from pca_core.cli.demo import demo_config",
        "from pca_core.runtime.runtime import Runtime",
        "runtime = Runtime(demo_config('/tmp/unused-state', 8080))",
        "runtime.start(threading.Event())",
        "runtime.stop(5)",
        "print(logging.getLogger().handlers, logging.getLogger().level == logging.WARNING)",
    ])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[]", "True"]


def test_a_message_over_transport_max_message_size_never_reaches_the_handler(tmp_path, caplog):
    cfg = make_config(tmp_path, transport={"plugin": "memory", "max_message_size": 100,
                                           "options": {"bus": f"runtime-{tmp_path.name}"}},
                      agent={"dispatch_queue_bytes": 1000})
    got = []
    handled = threading.Event()
    runtime = Runtime(cfg, on_message=lambda message: (got.append(message.topic), handled.set()))
    assert runtime.dispatcher.queue_bytes == 1000
    assert runtime.start(threading.Event())
    peer = control_plane(cfg)
    peer.publish("topology/Big", b"x" * 101)
    peer.publish("topology/Small", b"x" * 100)
    assert handled.wait(5)
    assert runtime.stop(5)
    assert got == ["topology/Small"] and runtime.dispatcher.dropped_oversize == 1
    assert "topology/Big, 101 bytes" in caplog.text
    peer.close()


@pytest.mark.parametrize(("section", "key", "value"), [
    ("transport", "max_message_size", 0), ("agent", "dispatch_queue_bytes", 0)])
def test_sizes_must_be_positive(tmp_path, section, key, value):
    tree = {"transport": {"plugin": "memory", "options": {"bus": "b"}}, "payload": dict(PAYLOAD)}
    tree.setdefault(section, {})[key] = value
    with pytest.raises(ConfigErrors, match=f"{section}.{key}: .*(bytes, more than 0|>= 1)"):
        Runtime(build(tree, source="test.toml", environ={})).load()
