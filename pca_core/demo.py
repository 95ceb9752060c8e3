"""``pca demo``: the agent and a simulated control plane in one process, over the ``memory`` transport.

Until the agent lifecycle lands, the demo shows what the core does today: it loads its plugins by name,
connects, subscribes to the Stratos topics, receives what the control plane sends through the dispatcher,
and shuts down cleanly within its deadline.
"""

from __future__ import annotations

import json
import threading
import time

from pca_core.config import Config, build
from pca_core.runtime import Runtime
from pca_core.transport import Message

DEMO_CONFIG = {
    "transport": {"plugin": "memory", "options": {"bus": "demo"}},
    "agent": {"shutdown_timeout": 5.0},
    "payload": {
        "APPLICATION_ID": "demo-app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.demo.domain",
        "MEMBER_ID": "php.member-1", "CLUSTER_INSTANCE_ID": "php-1", "PORTS": "8080",
        "MULTITENANT": "false", "TENANT_ID": "-1234",
    },
}

# What the simulated control plane sends, in order.
CONTROL_PLANE = (
    ("topology/CompleteTopologyEvent", {"topology": {"serviceMap": {}}}),
    ("topology/MemberInitializedEvent", {"serviceName": "php", "clusterId": "php.demo.domain",
                                         "memberId": "php.member-1"}),
    ("instance/notifier/ArtifactUpdatedEvent", {"clusterId": "php.demo.domain", "tenantId": "-1234"}),
    ("instance/notifier/InstanceCleanupMemberEvent", {"memberId": "php.member-1"}),
)


def demo_config() -> Config:
    """The embedded configuration the demo runs on."""
    return build(json.loads(json.dumps(DEMO_CONFIG)), source="(embedded demo configuration)", environ={})


def demo() -> int:
    """Runs the demo, printing a timeline; returns the exit code."""
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:6.3f}s] {text}", flush=True)

    received = threading.Semaphore(0)

    def on_message(message: Message) -> None:
        say(f"agent    <- {message.topic}")
        received.release()

    runtime = Runtime(demo_config(), source="demo", on_message=on_message)
    runtime.load()
    stop = threading.Event()
    say("agent: starting on the memory transport")
    runtime.start(stop)
    control_plane = runtime.transport.__class__(runtime.config.transport, runtime.transport.options)
    control_plane.connect()  # a second memory transport on the same bus: the simulated control plane
    for topic, body in CONTROL_PLANE:
        say(f"control  -> {topic}")
        control_plane.publish(topic, json.dumps(body).encode())
        if not received.acquire(timeout=5):
            say("agent: no message within 5 s")
            return 1
    control_plane.close()
    say("agent: shutting down")
    finished = runtime.stop()
    say("agent: stopped cleanly" if finished else "agent: stopped, work abandoned at the deadline")
    print("The lifecycle (InstanceStarted, activation, artifacts, ReadyToShutdown) is not built yet.")
    return 0
