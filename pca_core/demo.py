"""``pca demo``: the agent and a simulated control plane in one process, over the ``memory`` transport.

Until the agent lifecycle lands, the demo shows what the core does today: it loads its plugins by name,
connects, subscribes to the Stratos topics, keeps its topology and tenant models current from what the
control plane sends (printing each change as the models announce it), skips a malformed message, and
shuts down cleanly within its deadline.
"""

from __future__ import annotations

import json
import threading
import time

from pca_core import events
from pca_core.config import Config, build
from pca_core.runtime import Runtime
from pca_core.transport import Message

SERVICE, CLUSTER, MEMBER = "php", "php.demo.domain", "php.member-1"

DEMO_CONFIG = {
    "transport": {"plugin": "memory", "options": {"bus": "demo"}},
    "agent": {"shutdown_timeout": 5.0},
    "payload": {
        "APPLICATION_ID": "demo-app", "SERVICE_NAME": SERVICE, "CLUSTER_ID": CLUSTER, "MEMBER_ID": MEMBER,
        "CLUSTER_INSTANCE_ID": "php-1", "PORTS": "8080", "MULTITENANT": "false", "TENANT_ID": "-1234",
    },
}


def demo_config() -> Config:
    """The embedded configuration the demo runs on."""
    return build(json.loads(json.dumps(DEMO_CONFIG)), source="(embedded demo configuration)", environ={})


def control_plane_messages() -> list[tuple[str, bytes]]:
    """What the simulated control plane sends, in order."""
    ids = {"service_name": SERVICE, "cluster_id": CLUSTER, "member_id": MEMBER,
           "cluster_instance_id": "php-1", "network_partition_id": "np-1", "partition_id": "p-1"}
    member = events.Member(**ids, init_time=0, member_state_manager=events.MemberStatusStateManager(
        state_stack=["Created"], identifier=MEMBER))
    cluster = events.Cluster(service_name=SERVICE, cluster_id=CLUSTER, is_lb_cluster=False,
                             is_kubernetes_cluster=False, member_map={MEMBER: member})
    topology = events.Topology(cluster_map={}, service_map={SERVICE: events.Service(
        service_name=SERVICE, service_type="SingleTenant", cluster_id_cluster_map={CLUSTER: cluster})})
    sent = [
        events.CompleteTopologyEvent(topology=topology),
        events.MemberInitializedEvent(**ids, instance_id="i-1", default_private_ip="10.0.0.1"),
        events.CompleteTenantEvent(tenants=[events.Tenant(tenant_id=1, tenant_domain="acme.example.com")]),
        events.InstanceCleanupMemberEvent(member_id=MEMBER),
    ]
    messages = [(event.TOPIC, events.encode(event)) for event in sent]
    messages.insert(2, ("topology/MemberStartedEvent", b'{"memberId": 42}'))  # malformed: skipped
    return messages


def demo() -> int:
    """Runs the demo, printing a timeline; returns the exit code."""
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:6.3f}s] {text}", flush=True)

    handled = threading.Semaphore(0)
    runtime: Runtime

    def on_message(message: Message) -> None:
        applied = runtime.state.handle(message)
        say(f"agent    <- {message.topic}" + ("" if applied else "  (malformed: logged and skipped)"))
        handled.release()

    runtime = Runtime(demo_config(), source="demo", on_message=on_message)
    for model in (runtime.state.topology, runtime.state.tenants):
        model.observe(lambda change: say(f"           model: {change}"))
    runtime.load()
    say("agent: starting on the memory transport")
    runtime.start(threading.Event())
    assert runtime.transport is not None
    control_plane = type(runtime.transport)(runtime.config.transport, runtime.transport.options)
    control_plane.connect()  # a second memory transport on the same bus: the simulated control plane
    for topic, body in control_plane_messages():
        say(f"control  -> {topic}")
        control_plane.publish(topic, body)
        if not handled.acquire(timeout=5):
            say("agent: no message within 5 s")
            return 1
    control_plane.close()
    say(f"agent: member {MEMBER} is {runtime.state.topology.member_status(MEMBER)}; shutting down")
    finished = runtime.stop()
    say("agent: stopped cleanly" if finished else "agent: stopped, work abandoned at the deadline")
    print("The lifecycle (InstanceStarted, activation, artifacts, ReadyToShutdown) is not built yet.")
    return 0
