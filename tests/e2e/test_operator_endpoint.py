"""The operator's HTTP endpoint, scraped while an agent goes through its lifecycle: the values move.

One agent on the memory transport with ``[http] listen`` on a free loopback port, driven by the simulated
control plane, tailing a log file to a ``file`` publisher. The test reads ``/metrics`` with
prometheus_client's own parser, and ``/healthz`` and ``/readyz`` as a probe would.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pca_core import __version__ as pca_version
from pca_core.agent.control import ControlError
from pca_core.agent.lifecycle import Phase
from pca_core.builtin import memory
from pca_core.cli.control import run_control
from pca_core.config import build, to_data
from tests.e2e.test_lifecycle import Harness, control_plane
from tests.support.ports import free_port
from tests.support.waiting import wait_until

BUDGET = ("pca-dispatcher", "pca-timer", "pca-worker-", "pca-lifecycle", "pca-control", "pca-tailer-watch")
"""The threads of an agent (docs/runtime.md), as name prefixes."""


class Scraped(Harness):
    """An agent with the HTTP endpoint on, tailing ``app.log`` to ``records.jsonl``."""

    def __init__(self, home: Path, bus: str) -> None:
        super().__init__(home, bus, agent={"topology_request_interval": 0.2})  # asks again soon
        self.http_port = free_port()
        self.app_log = home / "app.log"
        self.app_log.write_text("")

    def config(self):
        tree = to_data(super().config())
        tree["http"] = {"listen": f"127.0.0.1:{self.http_port}"}
        tree["logs"] = {"enabled": True, "paths": [str(self.app_log)]}
        tree["health"] = {"enabled": False}
        tree["publishers"] = [{"plugin": "file", "flush_interval": 0.05,
                               "options": {"path": str(self.home / "records.jsonl")}}]
        return build(tree, source="test", environ={})

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) of ``GET path``."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``, by (name, sorted labels)."""
        status, content_type, body = self.get("/metrics")
        assert status == 200 and content_type.startswith("text/plain; version="), (status, content_type)
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(body) for sample in family.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def scraped(request) -> Iterator[Scraped]:
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))  # short: a Unix socket lives in it
    h = Scraped(home, f"endpoint-{request.node.name}")
    yield h
    h.dispose()


def test_the_endpoint_follows_the_lifecycle_an_outage_and_the_logs(scraped):
    before = set(threading.enumerate())
    agent = scraped.start()  # no control plane yet: the agent waits for the topology
    assert wait_until(lambda: agent.phase is Phase.WAITING_FOR_TOPOLOGY, 20)
    assert scraped.get("/healthz")[0] == 200
    # The endpoint is served by the control channel's thread: the agent's threads are the documented ones.
    started = {thread.name for thread in set(threading.enumerate()) - before}
    assert all(name.startswith(BUDGET) for name in started), started
    status, _, body = scraped.get("/readyz")
    assert status == 503 and "the complete topology" in body, body
    assert scraped.value("pca_ready") == 0
    assert scraped.value("pca_lifecycle_phase", phase="waiting_for_topology") == 1
    assert scraped.value("pca_lifecycle_phase", phase="active") == 0
    assert scraped.value("pca_transport_connected") == 1
    assert scraped.value("pca_info", version=pca_version, plugin_api="2.0") == 1

    simulator, transport = control_plane(scraped)
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    assert wait_until(lambda: scraped.get("/readyz")[0] == 200, 20)
    assert scraped.value("pca_ready") == 1
    assert scraped.value("pca_lifecycle_phase", phase="active") == 1
    # InstanceStartedEvent and InstanceActivatedEvent at least
    assert wait_until(lambda: scraped.value("pca_status_events_published_total") >= 2, 20)
    assert scraped.value("pca_status_events_queued") == 0
    assert scraped.value("pca_messages_received_total") > 0
    assert scraped.value("pca_extension_runs_total") >= 2  # the recording scripts of the test's extensions
    assert scraped.value("pca_extension_failures_total") == 0

    transport.publish("topology/MemberActivatedEvent", b"{not json")  # malformed: counted, skipped
    assert wait_until(lambda: scraped.value("pca_messages_dropped_total", reason="malformed") == 1, 20)

    with scraped.app_log.open("a") as log:
        log.write("first\nsecond\n")
    assert wait_until(lambda: scraped.value("pca_records_published_total", publisher="file[0]") == 2, 20)
    assert wait_until(lambda: scraped.value("pca_log_tailer_lag_bytes") == 0, 20)
    assert scraped.value("pca_records_dropped_total", publisher="file[0]") == 0

    memory.set_available(scraped.bus, False)  # a broker outage: not ready, though still active
    assert wait_until(lambda: scraped.value("pca_transport_connected") == 0, 20)
    status, _, body = scraped.get("/readyz")
    assert status == 503 and "transport lost" in body, body
    memory.set_available(scraped.bus, True)
    assert wait_until(lambda: scraped.get("/readyz")[0] == 200, 20)
    assert scraped.value("pca_transport_reconnects_total") == 1

    assert scraped.get("/nowhere")[0] == 404
    transport.close()
    simulator.close()


def test_pca_maintenance_prints_the_phase_after_the_change_and_the_endpoint_follows(scraped, capsys):
    simulator, transport = control_plane(scraped)
    agent = scraped.start()
    assert wait_until(lambda: agent.phase is Phase.ACTIVE, 20)
    socket_path = scraped.home / "state" / "control.sock"

    def pca(*words: str) -> str:
        command, *rest = words
        args = argparse.Namespace(command=command, mode=rest[0] if rest else None, stop=False, wait=20.0,
                                  json=False)
        assert run_control(socket_path, args) == 0
        return capsys.readouterr().out

    assert pca("maintenance", "on") == "phase: in maintenance\n"
    assert scraped.value("pca_lifecycle_phase", phase="maintenance") == 1
    assert scraped.get("/readyz")[0] == 503 and scraped.value("pca_ready") == 0
    assert pca("maintenance", "off") in ("phase: waiting for the ports\n", "phase: active\n")
    assert wait_until(lambda: scraped.get("/readyz")[0] == 200, 20)
    assert "ready              True" in pca("status")
    transport.close()
    simulator.close()


def test_a_message_for_the_endpoint_is_answered_in_full_with_head_and_refused_methods(scraped):
    scraped.start()
    request = urllib.request.Request(f"http://127.0.0.1:{scraped.http_port}/healthz", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
    url = f"http://127.0.0.1:{scraped.http_port}/metrics"
    request = urllib.request.Request(url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_an_address_in_use_stops_the_start_with_the_key():
    home = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))
    h = Scraped(home, "endpoint-in-use")
    taken = socket.create_server(("127.0.0.1", h.http_port))
    try:
        with pytest.raises(ControlError, match=r"cannot listen on http\.listen 127\.0\.0\.1:\d+"):
            h.start()
    finally:
        taken.close()
        h.dispose()
