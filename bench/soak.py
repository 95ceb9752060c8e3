#!/usr/bin/env python3
"""Soak: the agent as a process of its own, over Mosquitto, under steady traffic mixed with bad input.

The script starts a Mosquitto of its own (a free port on 127.0.0.1, no queue limit) and runs the real agent
(``python -m pca_core.cli.main run``) on a native configuration written to a temporary directory: the
mqtt transport, a complete payload, the state in that directory, no extensions. A paho client plays the
control plane: it answers the agent's requests (a complete topology holding the member as Initialized,
tenants, signups) and its status events (MemberStarted, MemberActivated), and listens on the member's
port so that the agent activates. Then it publishes a fixed workload at a fixed rate (QoS 1):

- ``--messages`` realistic events (default 30,000 at 100/s, 5 minutes): MemberStarted/MemberActivated of
  20 other members in turn, a complete topology every 50 messages (every other one with a member more),
  tenant created/updated/removed events, a complete tenant list every 200, signups added and removed;
- interleaved with them, ``--corpus-rounds`` rounds of the bad-input corpus (``bench/_corpus.py``: deep
  nesting, huge numbers, invalid UTF-8, not JSON, wrong types, unknown event classes, 5 MB fields) and
  ``--oversize`` messages of 17 MiB, above the default ``transport.max_message_size`` (16 MiB).

The first 10 % of the realistic events, one round of the corpus and one oversize message are the warm-up.
After the warm-up and again after the last message, the control plane sends a MemberMaintenanceModeEvent
for the agent's own member and asks the agent (``status`` on its control socket, reading until the agent
closes the connection) until it reports that status: the agent handles its messages in order, so
everything before was handled. Each time it then samples the agent process from ``/proc``: resident
memory (VmRSS), threads (``/proc/<pid>/task``) and open file descriptors (``/proc/<pid>/fd``). The growth
figures are the end's sample minus the warm-up's. Then the agent gets SIGTERM; its exit code and how long
it took to exit are reported, against ``agent.shutdown_timeout`` (10 s here).

From the agent's log (INFO): the longest line in bytes, ``Traceback`` lines (uncaught: the log and
the agent's stderr together), WARNING and ERROR lines. Goals: rss_growth_mb <= 5, threads_growth 0,
fds_growth 0, max_log_line_bytes <= 4096, uncaught 0. The script exits 1 when the agent died, did not
activate or did not handle the workload in time, or did not exit 0 on SIGTERM.

Usage: python bench/soak.py [--json] [--messages N] [--rate R] [--corpus-rounds K] [--oversize M]
                            [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the test-owned Mosquitto of tests/support
from _corpus import BadInput, corpus, oversize

from pca_core.stratos import events
from pca_core.testing.waiting import wait_until as _waited
from tests.support.mosquitto import Mosquitto

SERVICE, CLUSTER, APPLICATION = "php", "php.soak.domain", "soak-app"
MEMBER = f"{CLUSTER}.member-0"
OTHER_MEMBERS = 20
TENANTS = 50
SHUTDOWN_TIMEOUT = 10.0
START_TIMEOUT = 60.0
HANDLED_TIMEOUT = 300.0
"""Seconds the agent gets to handle what was sent before a marker (the oversize messages are slow)."""


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls ``condition`` until it is true; raises TimeoutError naming ``what`` after ``timeout`` seconds."""
    if not _waited(condition, timeout, interval):
        raise TimeoutError(f"{what}: not within {timeout:g} s")
PENDING = 200
"""Publishes awaiting their PUBACK at most; then the oldest is awaited."""
LIFECYCLE = [events.MemberStatus.CREATED, events.MemberStatus.INITIALIZED, events.MemberStatus.STARTING,
             events.MemberStatus.ACTIVE]


class SoakFailed(Exception):
    """The agent died, did not get going, or did not handle the workload in time."""


def ids(member_id: str) -> dict[str, str]:
    """The identifying fields of a member event for ``member_id`` of the soak's cluster."""
    return {"service_name": SERVICE, "cluster_id": CLUSTER, "member_id": member_id,
            "cluster_instance_id": f"{CLUSTER}-1", "network_partition_id": "network-partition-1",
            "partition_id": "partition-1"}


class ControlPlane:
    """The Stratos control plane over a paho client: the model of the topology it publishes, and replies.

    Args:
        broker_port: the broker's port.
        app_port: the member's port (in the port maps of the activation events).
    """

    def __init__(self, broker_port: int, app_port: int) -> None:
        self.app_port = app_port
        self.statuses = {MEMBER: events.MemberStatus.INITIALIZED}
        self.statuses.update({f"{CLUSTER}.member-{k}": events.MemberStatus.ACTIVE
                              for k in range(1, OTHER_MEMBERS + 1)})
        self.activated = threading.Event()
        self.topology_requests = 0
        self._lock = threading.Lock()  # statuses: the replies run on paho's thread
        self._pending: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pca-soak-control-plane")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.connect("127.0.0.1", broker_port)
        self._client.loop_start()
        self._client.subscribe([("initializer/#", 1), ("instance/status/#", 1)])
        if not subscribed.wait(START_TIMEOUT):  # before the agent starts, or its first request is lost
            self.close()
            raise SoakFailed("the control plane's subscription was not acknowledged")

    def close(self) -> None:
        """Disconnects (what was not acknowledged yet is dropped)."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, body: bytes) -> None:
        """Publishes at QoS 1, keeping at most PENDING publishes unacknowledged (one of 17 MiB alone)."""
        self._pending.append(self._client.publish(topic, body, qos=1))
        if len(self._pending) > PENDING or len(body) > 1024 * 1024:
            self.drain(PENDING if len(body) <= 1024 * 1024 else 0)

    def drain(self, keep: int = 0) -> None:
        """Waits for the PUBACKs of all but the last ``keep`` publishes."""
        while len(self._pending) > keep:
            info = self._pending.popleft()
            info.wait_for_publish(HANDLED_TIMEOUT)
            if not info.is_published():
                raise SoakFailed(f"the broker did not acknowledge a publish within {HANDLED_TIMEOUT:g} s")

    def send(self, event: events.Event) -> None:
        """Publishes ``event`` on its topic."""
        self.publish(event.TOPIC, events.encode(event))

    def set_status(self, member_id: str, status: events.MemberStatus) -> events.Event:
        """Records ``status`` and returns the event that announces it."""
        with self._lock:
            self.statuses[member_id] = status
        if status == events.MemberStatus.ACTIVE:
            port = self.app_port
            return events.MemberActivatedEvent(
                **ids(member_id), port_map={str(port): events.Port(protocol="http", value=port, proxy=port)},
                default_private_ip="127.0.0.1", member_private_ips=["127.0.0.1"], application_id=APPLICATION)
        if status == events.MemberStatus.STARTING:
            return events.MemberStartedEvent(**ids(member_id), status=status)
        if status == events.MemberStatus.IN_MAINTENANCE:
            return events.MemberMaintenanceModeEvent(**ids(member_id), status=status)
        raise ValueError(status)

    def topology(self, extra_members: int = 0, property_value: str | None = None) -> bytes:
        """The complete topology event as the control plane holds it, with ``extra_members`` more members."""
        with self._lock:
            statuses = dict(self.statuses)
        statuses.update({f"{CLUSTER}.extra-{k}": events.MemberStatus.STARTING for k in range(extra_members)})
        members = {}
        for member_id, status in statuses.items():
            stack = LIFECYCLE[:LIFECYCLE.index(status) + 1] if status in LIFECYCLE else [*LIFECYCLE, status]
            manager = events.MemberStatusStateManager(state_stack=[str(s) for s in stack],
                                                      identifier=member_id)
            members[member_id] = events.Member(
                **ids(member_id), init_time=1450000000000, default_private_ip="127.0.0.1",
                member_private_ips=["127.0.0.1"], port_map={}, member_state_manager=manager)
        cluster = events.Cluster(service_name=SERVICE, cluster_id=CLUSTER, tenant_range="*",
                                 is_lb_cluster=False, is_kubernetes_cluster=False, app_id=APPLICATION,
                                 member_map=members)
        properties = {"soak": property_value} if property_value is not None else None
        service = events.Service(service_name=SERVICE, service_type="SingleTenant", properties=properties,
                                 cluster_id_cluster_map={CLUSTER: cluster})
        return events.encode(events.CompleteTopologyEvent(
            topology=events.Topology(cluster_map={}, service_map={SERVICE: service})))

    def _on_message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        name = message.topic.rpartition("/")[2]
        # On paho's thread, which must not wait for its own PUBACKs: these publishes are not tracked.
        reply = None
        if name == "CompleteTopologyRequestEvent":
            self.topology_requests += 1
            self._client.publish(events.CompleteTopologyEvent.TOPIC, self.topology(), qos=1)
        elif name == "CompleteTenantRequestEvent":
            reply = tenant_list()
        elif name == "CompleteApplicationSignUpsRequestEvent":
            reply = events.CompleteApplicationSignUpsEvent(application_sign_ups=[])
        elif name == "InstanceStartedEvent":
            reply = self.set_status(MEMBER, events.MemberStatus.STARTING)
        elif name == "InstanceActivatedEvent":
            reply = self.set_status(MEMBER, events.MemberStatus.ACTIVE)
        if reply is not None:
            self._client.publish(reply.TOPIC, events.encode(reply), qos=1)
        if name == "InstanceActivatedEvent":
            self.activated.set()


def tenant_list() -> events.CompleteTenantEvent:
    """The complete tenant list: the super tenant and TENANTS others."""
    others = [events.Tenant(tenant_id=t, tenant_domain=f"tenant-{t}.example.org")
              for t in range(1, TENANTS + 1)]
    return events.CompleteTenantEvent(tenants=[events.Tenant(tenant_id=-1234, tenant_domain="carbon.super"),
                                               *others])


def realistic(plane: ControlPlane, start: int, count: int) -> Iterator[tuple[str, bytes]]:
    """Messages ``start`` to ``start + count`` of the realistic workload, each built when it is due."""
    for i in range(start, start + count):
        if i % 50 == 0:
            yield events.CompleteTopologyEvent.TOPIC, plane.topology(extra_members=(i // 50) % 2)
            continue
        event: events.Event
        tenant = i // 10 % TENANTS + 1
        if i % 200 == 100:
            event = tenant_list()
        elif i % 10 == 3:
            event = events.TenantCreatedEvent(tenant=events.Tenant(tenant_id=tenant,
                                                                   tenant_domain=f"tenant-{tenant}.example.org"))
        elif i % 10 == 5:
            event = events.TenantUpdatedEvent(tenant_id=tenant, tenant_domain=f"t{i}.example.org")
        elif i % 10 == 7:
            event = events.TenantRemovedEvent(tenant_id=tenant)
        elif i % 25 == 9:
            event = events.ApplicationSignUpAddedEvent(application_id="other-app", tenant_id=tenant,
                                                       cluster_ids=[CLUSTER])
        elif i % 25 == 21:
            event = events.ApplicationSignUpRemovedEvent(application_id="other-app", tenant_id=tenant)
        else:
            member = f"{CLUSTER}.member-{i % OTHER_MEMBERS + 1}"
            status = events.MemberStatus.STARTING if i // OTHER_MEMBERS % 2 else events.MemberStatus.ACTIVE
            event = plane.set_status(member, status)
        yield event.TOPIC, events.encode(event)


def interleave(good: Iterator[tuple[str, bytes]], count: int, *bad: list[BadInput]) \
        -> Iterator[tuple[str, bytes]]:
    """The ``count`` messages of ``good`` with those of each list of ``bad`` spread evenly among them."""
    slots: dict[int, list[BadInput]] = collections.defaultdict(list)
    for items in bad:
        for j, item in enumerate(items):
            slots[count * (2 * j + 1) // (2 * len(items))].append(item)
    for i, message in enumerate(good):
        for item in slots.get(i, ()):
            yield item.topic, item.body()
        yield message


class Agent:
    """The agent as a child process, its files in ``home``."""

    def __init__(self, home: Path, broker_url: str, app_port: int, log_level: str) -> None:
        self.home = home
        self.log_file = home / "agent.log"
        self.stderr_file = home / "agent.stderr"
        self.socket = home / "state" / "control.sock"
        config = home / "agent.toml"
        config.write_text(tomli_w.dumps({
            "transport": {"plugin": "mqtt", "urls": [broker_url]},
            "agent": {"state_dir": str(home / "state"), "listen_address": "127.0.0.1",
                      "shutdown_timeout": SHUTDOWN_TIMEOUT},
            "payload": {"APPLICATION_ID": APPLICATION, "SERVICE_NAME": SERVICE, "CLUSTER_ID": CLUSTER,
                        "MEMBER_ID": MEMBER, "INSTANCE_ID": "i-soak", "CLUSTER_INSTANCE_ID": f"{CLUSTER}-1",
                        "NETWORK_PARTITION_ID": "network-partition-1", "PARTITION_ID": "partition-1",
                        "PORTS": str(app_port), "MULTITENANT": "false", "TENANT_ID": "-1234"},
        }))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PCA_")}  # no overrides
        with self.stderr_file.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pca_core.cli.main", "--log-level", log_level, "--log-file",
                 str(self.log_file), "run", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=environ)

    def alive(self) -> None:
        """Raises SoakFailed when the agent has exited."""
        if self.proc.poll() is not None:
            raise SoakFailed(f"the agent exited with {self.proc.returncode}; its log is in {self.home}")

    def member_status(self) -> str | None:
        """The member status the agent reports on its control socket, or None while it cannot say.

        Reads until the agent closes the connection, so the agent holds no descriptor for it afterwards.
        """
        reply = bytearray()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(10)
                connection.connect(str(self.socket))
                connection.sendall(b'{"command": "status", "arguments": {}}\n')
                while chunk := connection.recv(65536):
                    reply += chunk
            answer = json.loads(reply.partition(b"\n")[0])
            return answer["result"]["member_status"]
        except (OSError, ValueError, KeyError, TypeError):  # not listening yet, or busy: ask again
            return None

    def wait_for_status(self, status: str) -> None:
        """Waits until the agent reports ``status`` for its member."""
        def reached() -> bool:
            self.alive()
            return self.member_status() == status
        try:
            wait_until(reached, HANDLED_TIMEOUT, f"the agent reporting its member {status}", interval=0.1)
        except TimeoutError as exc:
            raise SoakFailed(str(exc)) from None

    def sample(self) -> dict[str, int]:
        """Resident memory and its peak (kB), threads and open descriptors of the agent process."""
        proc = Path(f"/proc/{self.proc.pid}")
        fields = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
        return {"rss_kb": int(fields["VmRSS"].split()[0]), "peak_kb": int(fields["VmHWM"].split()[0]),
                "threads": len(os.listdir(proc / "task")), "fds": len(os.listdir(proc / "fd"))}

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds to exit (SIGKILL after twice the timeout)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(2 * SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - start

    def kill(self) -> None:
        """Ends the agent at once if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_log(*paths: Path) -> dict[str, int]:
    """The longest line (bytes), Traceback, WARNING and ERROR lines, and total bytes of ``paths``."""
    figures = {"max_log_line_bytes": 0, "uncaught": 0, "log_warnings": 0, "log_errors": 0, "log_bytes": 0}
    for path in paths:
        with path.open("rb") as log:
            for line in log:
                line = line.rstrip(b"\n")
                figures["max_log_line_bytes"] = max(figures["max_log_line_bytes"], len(line))
                figures["log_bytes"] += len(line) + 1
                figures["uncaught"] += line.startswith(b"Traceback")
                head = line[:200]
                figures["log_warnings"] += b" WARNING " in head
                figures["log_errors"] += b" ERROR " in head
    return figures


def publish(plane: ControlPlane, agent: Agent, rate: float, good: Iterator[tuple[str, bytes]], count: int,
            *bad: list[BadInput]) -> int:
    """Publishes ``count`` messages of ``good`` and the ``bad`` inputs among them at ``rate`` per second.

    Returns once the agent has handled them all (the marker: its own member in maintenance, reported on
    its control socket); returns how many were sent.
    """
    start, sent = time.monotonic(), 0
    for sent, (topic, body) in enumerate(interleave(good, count, *bad), 1):
        if (delay := start + sent / rate - time.monotonic()) > 0:
            time.sleep(delay)  # pacing the publisher, not waiting for the agent
        plane.publish(topic, body)
        if sent % 100 == 0:
            agent.alive()
    plane.send(plane.set_status(MEMBER, events.MemberStatus.IN_MAINTENANCE))
    plane.drain()
    agent.wait_for_status(events.MemberStatus.IN_MAINTENANCE)
    return sent


def soak(args: argparse.Namespace, home: Path) -> dict[str, object]:
    """Runs the soak in ``home``; returns the figures."""
    bad = corpus(CLUSTER, f"{CLUSTER}.member-1")
    warm = args.messages // 10
    with Mosquitto(extra=("max_queued_messages 0",)) as broker, \
            socket.create_server(("127.0.0.1", 0)) as application:
        app_port = application.getsockname()[1]
        plane = ControlPlane(broker.port, app_port)
        try:
            agent = Agent(home, broker.url, app_port, args.log_level)
            try:
                def activated() -> bool:
                    agent.alive()
                    return plane.activated.is_set()
                try:
                    wait_until(activated, START_TIMEOUT, "the agent activating")
                except TimeoutError as exc:
                    raise SoakFailed(f"{exc}; its log is in {home}") from None

                def topology(value: str) -> bytes:
                    return plane.topology(property_value=value)
                big = [oversize(j, topology) for j in range(args.oversize)]
                start = time.monotonic()
                sent = publish(plane, agent, args.rate, realistic(plane, 0, warm), warm,
                               bad if args.corpus_rounds else [], big[:1])
                before = agent.sample()
                plane.send(plane.set_status(MEMBER, events.MemberStatus.ACTIVE))
                rest = args.messages - warm
                sent += publish(plane, agent, args.rate, realistic(plane, warm, rest), rest,
                                bad * max(args.corpus_rounds - 1, 0), big[1:])
                after = agent.sample()
                elapsed = time.monotonic() - start
                code, shutdown = agent.terminate()
            finally:
                agent.kill()
        finally:
            plane.close()
    return {
        "messages": args.messages, "bad_inputs": len(bad) * args.corpus_rounds, "oversize": args.oversize,
        "sent": sent, "rate": round(sent / elapsed, 1), "elapsed_s": round(elapsed, 1),
        "rss_mb_before": round(before["rss_kb"] / 1024, 1), "rss_mb_after": round(after["rss_kb"] / 1024, 1),
        "rss_growth_mb": round((after["rss_kb"] - before["rss_kb"]) / 1024, 1),
        "rss_peak_mb": round(after["peak_kb"] / 1024, 1),
        "threads_before": before["threads"], "threads_after": after["threads"],
        "threads_growth": after["threads"] - before["threads"],
        "fds_before": before["fds"], "fds_after": after["fds"], "fds_growth": after["fds"] - before["fds"],
        **read_log(agent.log_file, agent.stderr_file),
        "topology_requests": plane.topology_requests,
        "exit_code": code, "shutdown_s": round(shutdown, 2), "shutdown_timeout_s": SHUTDOWN_TIMEOUT,
        "shutdown_within_timeout": shutdown <= SHUTDOWN_TIMEOUT,
    }


def report(figures: dict[str, object]) -> None:
    """Prints the figures as a table, goals beside them."""
    print(f"{figures['sent']:,} messages at {figures['rate']}/s in {figures['elapsed_s']} s: "
          f"{figures['messages']:,} realistic, {figures['bad_inputs']} bad inputs, "
          f"{figures['oversize']} of 17 MiB")
    rows = [
        ("rss_growth_mb", f"{figures['rss_mb_before']} -> {figures['rss_mb_after']} MB, "
                          f"peak {figures['rss_peak_mb']} MB", "<= 5"),
        ("threads_growth", f"{figures['threads_before']} -> {figures['threads_after']}", "0"),
        ("fds_growth", f"{figures['fds_before']} -> {figures['fds_after']}", "0"),
        ("max_log_line_bytes", f"{figures['log_bytes']:,} bytes of log", "<= 4096"),
        ("uncaught", "Traceback lines", "0"),
        ("log_warnings", "", ""), ("log_errors", "", ""), ("topology_requests", "", ""),
    ]
    for key, detail, goal in rows:
        print(f"  {key:<20} {figures[key]:>12,}   {detail:<40} {'goal ' + goal if goal else ''}".rstrip())
    print(f"  SIGTERM: exit code {figures['exit_code']} after {figures['shutdown_s']} s "
          f"(shutdown timeout {figures['shutdown_timeout_s']:g} s)")


def main() -> int:
    """Runs the soak and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--messages", type=int, help="realistic messages (30,000; --quick: 300)")
    parser.add_argument("--rate", type=float, help="messages per second, all kinds (100; --quick: 1,000)")
    parser.add_argument("--corpus-rounds", type=int, help="rounds of the bad-input corpus (5; --quick: 1)")
    parser.add_argument("--oversize", type=int, help="messages of 17 MiB (10; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the small defaults above")
    parser.add_argument("--log-level", default="INFO", help="the agent's log level (INFO)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the agent's directory (its log) and say where")
    args = parser.parse_args()
    defaults = (300, 1000.0, 1, 2) if args.quick else (30_000, 100.0, 5, 10)
    for name, default in zip(("messages", "rate", "corpus_rounds", "oversize"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.messages < 10 or args.rate <= 0 or args.corpus_rounds < 0 or args.oversize < 0:
        parser.error("--messages at least 10, --rate above 0, --corpus-rounds and --oversize at least 0")
    # SIGTERM ends the script through its cleanup (the agent and Mosquitto stopped), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    home = Path(tempfile.mkdtemp(prefix="pca-soak-"))
    try:
        figures = soak(args, home)
    except SoakFailed as exc:
        print(f"soak: {exc}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if args.keep:
            print(f"soak: the agent's directory is {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures)
    return 0 if figures["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
