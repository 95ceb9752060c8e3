"""``pca demo``: the agent and a simulated control plane in one process, over the ``memory`` transport.

The demo listens on a free local port as the application would, writes an extension script, and runs
the whole lifecycle: the complete topology, the member initialized, InstanceStarted, the port check,
InstanceActivated (and the extension it runs), cleanup, ReadyToShutdown, and a clean shutdown.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pca_core.agent.lifecycle import Agent
from pca_core.cli.simulator import Simulator
from pca_core.config import Config, build
from pca_core.runtime.runtime import Runtime

EXTENSION = """#!/bin/sh
echo "InstanceActivatedEvent extension: member $STRATOS_MEMBER_ID of $STRATOS_CLUSTER_ID is serving"
"""


def demo_config(state_dir: str, port: int, extensions_dir: str | None = None, *, transport: str = "memory",
                urls: Sequence[str] = ()) -> Config:
    """The embedded configuration the demo runs on."""
    options = {"bus": f"demo-{port}"} if transport == "memory" else {}
    tree = {
        "transport": {"plugin": transport, "urls": list(urls), "options": options},
        "agent": {"shutdown_timeout": 5.0, "state_dir": state_dir, "listen_address": "127.0.0.1",
                  "extensions_dir": extensions_dir},
        "payload": {
            "APPLICATION_ID": "demo-app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.demo.domain",
            "MEMBER_ID": "php.member-1", "INSTANCE_ID": "instance-1", "CLUSTER_INSTANCE_ID": "php-1",
            "NETWORK_PARTITION_ID": "network-partition-1", "PARTITION_ID": "partition-1",
            "PORTS": str(port), "MULTITENANT": "false", "TENANT_ID": "-1234",
        },
    }
    if extensions_dir is None:
        del tree["agent"]["extensions_dir"]
    return build(json.loads(json.dumps(tree)), source="(embedded demo configuration)", environ={})


def demo(transport: str = "memory", urls: Sequence[str] = ()) -> int:
    """Runs the demo over ``transport`` (the in-process bus by default), printing a timeline.

    Returns:
        The exit code: 0 when the whole lifecycle ran and the agent stopped cleanly.

    Raises:
        PcaError: the transport plugin is not installed, or its broker cannot be reached.
    """
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - start:6.3f}s] {text}", flush=True)

    logging.getLogger("pca_core").setLevel(logging.WARNING)  # the timeline tells the story
    logging.getLogger("pca_core.agent.lifecycle").setLevel(logging.INFO)
    logging.getLogger("pca_core.agent.extensions").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="pca-demo-", dir="/tmp") as home, \
            socket.create_server(("127.0.0.1", 0)) as application:
        port = application.getsockname()[1]
        extensions = Path(home) / "extensions"
        extensions.mkdir()
        script = extensions / "InstanceActivatedEvent.sh"
        script.write_text(EXTENSION)
        script.chmod(0o755)
        say(f"application listening on 127.0.0.1:{port}; agent state in {home}")
        config = demo_config(str(Path(home) / "state"), port, str(extensions), transport=transport, urls=urls)
        runtime = Runtime(config, source="demo")
        runtime.load()
        stop, finished = threading.Event(), threading.Event()
        agent = Agent(runtime, stop)
        assert runtime.transport is not None
        # A second connection to the same broker is the simulated control plane.
        control_plane = type(runtime.transport)(runtime.config.transport, runtime.transport.options)
        control_plane.connect(timeout=runtime.config.transport.connect_timeout)
        simulator = Simulator(control_plane, runtime.config.identity, cleanup_after_activation=True,
                              say=say, finished=finished)
        simulator.start()
        say("agent: starting")
        agent.start()
        done = finished.wait(30)
        say(f"agent: {agent.phase}; shutting down")
        clean = runtime.stop()
        simulator.close()
        control_plane.close()
        ok = clean and done
        say("agent: stopped cleanly" if ok else "agent: stopped, but the lifecycle did not finish")
        return 0 if ok else 1
