#!/usr/bin/env python3
"""Fleet: many agents on one broker; how long a member event takes to reach every agent's model.

The script starts a broker of its own on 127.0.0.1 (``--transport mqtt``: Mosquitto; ``amqp``: RabbitMQ
with AMQP 1.0; ``kafka``: Tansu) and ``--agents`` real agents (the core's ``Runtime`` and ``Agent`` with
that transport, each its own state directory, member and broker connection), ``--per-process`` of them in
each host process (``--per-process 1``: a process per agent, as in production; more: agents sharing one
interpreter, which the core allows: every agent owns its threads, state and connection, and nothing in the
core is process-global). The agents' own members are not in the topology, so each one stays waiting for
its initialization and applies every topology event to its model: the work a member of a big cluster
does for the others.

A client of the core's transport plays the control plane: once every agent is connected it publishes a
CompleteTopologyEvent of ``--members`` members (``bench/topology.py``'s, 20 services x 5 clusters), waits
until every agent's model holds them all, then publishes ``--events`` member events (MemberStartedEvent,
then MemberActivatedEvent, on existing members; at most two per member) at ``--rate`` per second, QoS 1,
then stays quiet for ``--idle`` seconds.

Each agent notes, on its topology model's change callback, when each member's change arrived (wall clock,
the same machine). JSON keys:

- ``p50_ms``, ``p99_ms``: per event, from its publish to the last agent's model having it; the median and
  the 99th percentile over the events (goal p99 <= 1000 ms at 500 agents);
- ``snapshot_apply_p99_ms``: from the snapshot's publish to an agent's model holding every member, the
  99th percentile over the agents (transfer of the snapshot by the broker included);
- ``agent_cpu_idle_pct``: the agent processes' CPU during the quiet period, in percent of one core;
- ``rss_per_agent_mb``: the host processes' resident memory after the run, divided by the agents;
- ``broker_cpu_pct``: the broker's CPU while the events flowed, in percent of one core;
- ``agent_cpu_us_per_delivery``: the host processes' CPU from the first event's publish until every agent
  had every event, per event and agent (what one delivery costs an agent, its idle work included, and the
  host's answers to the benchmark's polls for what arrived: an upper bound);
- ``lost``: (agent, event) pairs that never arrived (goal 0).

The baseline round (``--no-baseline`` skips it) then plays the same to bare clients of the transport's
own library in the same number of host processes (paho with its network thread, a proton Container,
kafka-python consumers), each decoding every message's JSON and noting the member and status: what any
subscriber to the topology costs on this machine, without an agent. Keys ``baseline_p50_ms``,
``baseline_p99_ms``, ``baseline_snapshot_apply_p99_ms``, ``baseline_lost``, ``baseline_cpu_idle_pct``,
``baseline_cpu_us_per_delivery``, ``baseline_rss_per_client_mb``, and ``ratio_cpu_vs_baseline`` (pca's
CPU per delivery over the bare clients').

Usage: python bench/fleet.py [--json] [--transport mqtt|amqp|kafka] [--agents N] [--per-process K]
                             [--members M] [--events E] [--rate R] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENTS = ("CompleteTopologyEvent", "MemberStartedEvent", "MemberActivatedEvent")
"""The events the control plane publishes (names in ``pca_core.stratos.events``)."""


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--transport", choices=("mqtt", "amqp", "kafka"), default="mqtt",
                        help="the broker and transport (mqtt: Mosquitto)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the round of bare clients")
    parser.add_argument("--agents", type=int, default=50, help="agents (50)")
    parser.add_argument("--per-process", type=int, default=1, help="agents per host process (1)")
    parser.add_argument("--members", type=int, default=10_000, help="members of the topology (10,000)")
    parser.add_argument("--events", type=int, default=300, help="member events (300)")
    parser.add_argument("--rate", type=float, default=20.0, help="member events per second (20)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of quiet measured at the end (10)")
    return parser.parse_args()


# --- The agents' side (host processes) ----------------------------------------------------------------


def transport_table(transport: str, url: str, client_id: str) -> dict[str, Any]:
    """An agent's ``[transport]`` table (the Kafka topics exist before any agent starts)."""
    return {"plugin": transport, "urls": [url], "client_id": client_id}


def _host(conn: Any, root: str, kind: str, transport: str, url: str, home: str, first: int, count: int,
          members: int) -> None:
    """A host process: ``count`` agents (or bare clients), reporting what arrived when, until told to stop."""
    sys.path.insert(0, root)
    import logging

    logging.basicConfig(level=logging.ERROR)
    seen: list[dict[str, float]] = [{} for _ in range(count)]  # per agent: "member status" -> arrival time
    applied: list[float | None] = [None] * count  # per agent: when it held every member of the snapshot
    start = _start_agents if kind == "pca" else _start_bare
    stop = start(transport, url, home, range(first, first + count), members, seen, applied)
    conn.send(("ready", os.getpid()))
    while True:
        command = conn.recv()
        if command == "applied":
            conn.send(applied)
        elif command == "seen":
            conn.send(seen)
        else:
            break
    stop()
    conn.send("stopped")


def _start_agents(transport: str, url: str, home: str, indexes: range, members: int,
                  seen: list[dict[str, float]], applied: list[float | None]) -> Any:
    """Starts an agent per index, noting its model's changes; returns what stops them."""
    from pca_core.agent.lifecycle import Agent
    from pca_core.config import build
    from pca_core.runtime.runtime import Runtime
    from pca_core.stratos.topology.changes import MemberAdded, MemberStatusChanged

    runtimes = []
    for slot, index in enumerate(indexes):
        tree = {"transport": transport_table(transport, url, f"fleet-{index}"),
                "agent": {"state_dir": str(Path(home) / f"a{index}"), "workers": 1,
                          "topology_request_interval": 600},
                "health": {"enabled": False},
                "payload": {"APPLICATION_ID": "app-1", "SERVICE_NAME": "fleet", "CLUSTER_ID": "fleet.domain",
                            "MEMBER_ID": f"fleet.member-{index}", "PORTS": "1", "MULTITENANT": "false",
                            "TENANT_ID": "-1234"}}
        runtime = Runtime(build(tree, source="fleet", environ={}), source="fleet")
        runtime.load()
        agent = Agent(runtime, threading.Event())
        added = [0]

        def observe(change: Any, mine: dict[str, float] = seen[slot], slot: int = slot,
                    added: list[int] = added) -> None:
            kind = type(change)
            if kind is MemberStatusChanged and change.old is not None:  # not a member the snapshot added
                mine[f"{change.member_id} {change.new}"] = time.time()
            elif kind is MemberAdded:
                added[0] += 1
                if added[0] == members:
                    applied[slot] = time.time()

        agent.state.topology.observe(observe)
        if not agent.start():
            raise RuntimeError(f"agent {index} did not start")
        runtimes.append(runtime)
    return lambda: [runtime.stop(5) for runtime in runtimes]


def _noter(members: int, mine: dict[str, float], applied: list[float | None], slot: int) -> Any:
    """What a bare client does with a message body: decodes it and notes a member event or the snapshot."""
    def note(body: bytes) -> None:
        event = json.loads(body)
        if "topology" in event:
            held = sum(len(c.get("memberMap", {})) for service in event["topology"]["serviceMap"].values()
                       for c in service["clusterIdClusterMap"].values())
            if held == members:
                applied[slot] = time.time()
        elif "memberId" in event:  # MemberActivatedEvent has the ports, MemberStartedEvent a status
            mine[f"{event['memberId']} {'Active' if 'portMap' in event else 'Starting'}"] = time.time()
    return note


def _start_bare(transport: str, url: str, home: str, indexes: range, members: int,
                seen: list[dict[str, float]], applied: list[float | None]) -> Any:
    """Starts a bare client of the transport's library per index; returns what stops them."""
    notes = [_noter(members, seen[slot], applied, slot) for slot in range(len(indexes))]
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    if transport == "mqtt":
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        clients, subscribed = [], []
        for index, note in zip(indexes, notes, strict=True):
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{index}")
            client.on_message = lambda _c, _u, message, note=note: note(message.payload)
            client.on_connect = lambda c, *_: c.subscribe("topology/#", qos=1)
            granted = threading.Event()
            client.on_subscribe = lambda *_, granted=granted: granted.set()
            client.connect(host, int(port))
            client.loop_start()
            clients.append(client)
            subscribed.append(granted)
        _wait_all([granted.is_set for granted in subscribed])
        return lambda: [(c.loop_stop(), c.disconnect()) for c in clients]
    if transport == "amqp":
        from proton.handlers import MessagingHandler
        from proton.reactor import Container

        class Receivers(MessagingHandler):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.attached = 0

            def on_start(self, event: Any) -> None:
                for slot in range(len(notes)):
                    connection = event.container.connect(f"amqp://{host}:{port}", sasl_enabled=True,
                                                         allowed_mechs="ANONYMOUS")
                    receiver = event.container.create_receiver(connection, "/topic/topology.#")
                    receiver.slot = slot

            def on_link_opened(self, event: Any) -> None:
                self.attached += 1

            def on_message(self, event: Any) -> None:
                body = event.message.body
                notes[event.receiver.slot](body if isinstance(body, bytes) else bytes(body))

        handler = Receivers()
        container = Container(handler)
        thread = threading.Thread(target=container.run, daemon=True)
        thread.start()
        _wait_all([lambda: handler.attached >= len(notes)])
        return lambda: (container.stop(), thread.join(10))
    from kafka import KafkaConsumer
    from pca_kafka.names import Naming

    from pca_core.stratos import events

    topics = [Naming().name(getattr(events, name).TOPIC) for name in EVENTS]
    stopping, threads, joins = threading.Event(), [], []
    for index, note in zip(indexes, notes, strict=True):
        joined = threading.Event()  # partitions assigned and positioned at their ends

        def poll(note: Any = note, joined: threading.Event = joined, index: int = index) -> None:
            # The pca round wrote to the same topics: start at their ends, and only then say ready.
            consumer = KafkaConsumer(*topics, bootstrap_servers=f"{host}:{port}", group_id=f"bare-{index}",
                                     auto_offset_reset="latest")
            while not stopping.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for record in records:
                        note(record.value)
                if not joined.is_set() and consumer.assignment():
                    for partition in consumer.assignment():
                        consumer.position(partition)
                    joined.set()
            consumer.close()

        threads.append(threading.Thread(target=poll, daemon=True))
        threads[-1].start()
        joins.append(joined)
    _wait_all([joined.is_set for joined in joins])

    def stop() -> None:
        stopping.set()
        for thread in threads:
            thread.join(10)
    return stop


def _wait_all(conditions: list[Any]) -> None:
    """Waits until every condition holds (the bare clients' subscriptions), or raises."""
    deadline = time.monotonic() + START_TIMEOUT
    while not all(condition() for condition in conditions):
        if time.monotonic() > deadline:
            raise RuntimeError("the bare clients did not connect in time")
        time.sleep(0.05)


class Host:
    """A host process of agents."""

    def __init__(self, kind: str, transport: str, url: str, home: Path, first: int, count: int,
                 members: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_host, args=(child, str(ROOT), kind, transport, url, str(home),
                                                            first, count, members), daemon=True)
        self.process.start()
        self.pid = 0

    def ready(self) -> None:
        """Waits until every agent of the host connected."""
        if not self.conn.poll(START_TIMEOUT):
            raise RuntimeError("a host process did not start its agents in time")
        _, self.pid = self.conn.recv()

    def ask(self, command: str) -> Any:
        """The host's answer to ``command``."""
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        """Stops the host's agents and the process."""
        try:
            self.ask("stop")
        finally:
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- The control plane --------------------------------------------------------------------------------


def member_event(index: int, members: int) -> tuple[str, str, bytes]:
    """The ``index``-th member event: (key, topic, body).

    Each member once per round, MemberStartedEvent in even rounds and MemberActivatedEvent in odd ones,
    so that every event changes a status; its key (member id and new status) is unique up to two rounds.
    """
    from topology import CLUSTERS, SERVICES, port  # bench/topology.py

    from pca_core.stratos import events

    per_cluster = members // (SERVICES * CLUSTERS)
    position, activated = index % members, (index // members) % 2 == 1
    s, c, m = position % SERVICES, (position // SERVICES) % CLUSTERS, position // (SERVICES * CLUSTERS)
    assert m < per_cluster
    cluster_id = f"service-{s}.cluster-{c}.domain"
    ids = {"service_name": f"service-{s}", "cluster_id": cluster_id, "member_id": f"{cluster_id}.member-{m}",
           "cluster_instance_id": f"{cluster_id}-1", "network_partition_id": "network-partition-1",
           "partition_id": "partition-1"}
    event: events.Event
    if activated:
        event = events.MemberActivatedEvent(**ids, port_map={"8280": port(80, 8280)},
                                            member_private_ips=[f"10.{s}.{c}.{m}"],
                                            default_private_ip=f"10.{s}.{c}.{m}")
    else:
        event = events.MemberStartedEvent(**ids, status="Starting")
    status = "Active" if activated else "Starting"
    return f"{ids['member_id']} {status}", event.TOPIC, events.encode(event)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Broker:
    """The run's broker: its URL for the agents, its process for the CPU figure, and how to stop it."""

    def __init__(self, transport: str, home: Path) -> None:
        if transport == "mqtt":
            from tests.support.mosquitto import Mosquitto

            mosquitto = Mosquitto(home / "mosquitto", extra=("max_queued_messages 0", "message_size_limit 0"))
            mosquitto.start()
            self.url, self._pid, self.stop = mosquitto.url, lambda: mosquitto.pid, mosquitto.stop
        elif transport == "amqp":
            from tests.support.rabbitmq import RabbitMQ

            rabbitmq = RabbitMQ(home / "rabbitmq")
            rabbitmq.start()
            pid_file = rabbitmq.directory / "rabbitmq.pid"
            self.url, self.stop = rabbitmq.url, rabbitmq.shutdown
            self._pid = lambda: int(pid_file.read_text())
        else:
            from kafka.admin import KafkaAdminClient, NewTopic
            from pca_kafka.names import Naming

            from pca_core.stratos import events
            from tests.support.tansu import Tansu

            tansu = Tansu(home / "tansu")
            tansu.start()
            self.url, self._pid, self.stop = tansu.url, lambda: tansu.pid, tansu.stop
            admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap)  # the topics, before any consumer
            admin.create_topics([NewTopic(Naming().name(getattr(events, name).TOPIC), num_partitions=1,
                                          replication_factor=1) for name in EVENTS])
            admin.close()

    def cpu(self) -> float | None:
        """The broker process's CPU seconds so far; None when its process is not known."""
        try:
            return cpu_seconds(self._pid())
        except (OSError, ValueError):
            return None


def control_plane(transport: str, url: str) -> Any:
    """A connected client of the core's transport, publishing as the control plane."""
    from pca_core.api import TransportConfig
    from pca_core.runtime import discovery
    from pca_core.testing.building import build_plugin

    config = TransportConfig(plugin=transport, urls=(url,), client_id="fleet-control-plane")
    plane = build_plugin(discovery.load_plugin(discovery.TRANSPORTS, transport), config, key="transport")
    plane.connect(timeout=60)
    return plane


def play(kind: str, args: argparse.Namespace, broker: Broker, plane: Any, home: Path, snapshot: bytes,
         members: int) -> dict[str, Any]:
    """One round: hosts of agents (``pca``) or of bare clients (``bare``), the snapshot, the events."""
    from pca_core.stratos import events

    hosts: list[Host] = []
    try:
        for first in range(0, args.agents, args.per_process):
            hosts.append(Host(kind, args.transport, broker.url, home, first,
                              min(args.per_process, args.agents - first), members))
        for host in hosts:
            host.ready()
        published_snapshot = time.time()
        plane.publish(events.CompleteTopologyEvent.TOPIC, snapshot, timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            applied = [t for host in hosts for t in host.ask("applied")]
            if all(t is not None for t in applied) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the benchmark's driver polls the hosts
        if any(t is None for t in applied):
            raise RuntimeError(f"not every {kind} client applied the complete topology in time")
        broker_cpu = broker.cpu()
        flow_cpu = sum(cpu_seconds(host.pid) for host in hosts)
        sent: dict[str, float] = {}
        interval = 1.0 / args.rate
        start = time.monotonic()
        for i in range(args.events):
            key, topic, body = member_event(i, members)
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[key] = time.time()
            plane.publish(topic, body, timeout=60)
        flow_seconds = time.monotonic() - start
        after = broker.cpu()
        broker_cpu = None if broker_cpu is None or after is None else after - broker_cpu
        deadline = time.monotonic() + 60
        while True:  # until every agent has every event, or a minute passed
            seen = [agent for host in hosts for agent in host.ask("seen")]
            if all(key in agent for agent in seen for key in sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cpu_before = sum(cpu_seconds(host.pid) for host in hosts)
        flow_cpu = cpu_before - flow_cpu
        time.sleep(args.idle)  # the quiet period being measured
        idle_cpu = sum(cpu_seconds(host.pid) for host in hosts) - cpu_before
        rss = sum(rss_mb(host.pid) for host in hosts)
    finally:
        for host in hosts:
            host.stop()
    latencies, lost = [], 0
    for key, at in sent.items():
        arrivals = [agent.get(key) for agent in seen]
        lost += sum(t is None for t in arrivals)
        known = [t for t in arrivals if t is not None]
        if known:
            latencies.append((max(known) - at) * 1000)
    snapshot_ms = [(t - published_snapshot) * 1000 for t in applied]
    return {"p50_ms": round(statistics.median(latencies), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "snapshot_apply_p99_ms": round(percentile(snapshot_ms, 99), 1),
            "agent_cpu_idle_pct": round(idle_cpu / args.idle * 100, 2),
            "rss_per_agent_mb": round(rss / args.agents, 1),
            "broker_cpu_pct": None if broker_cpu is None else round(broker_cpu / flow_seconds * 100, 1),
            "agent_cpu_us_per_delivery": round(flow_cpu / (args.events * args.agents) * 1e6, 1), "lost": lost}


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Starts the broker, plays the control plane to the agents and then to the bare clients."""
    import topology  # bench/topology.py

    topology.MEMBERS = max(1, args.members // (topology.SERVICES * topology.CLUSTERS))
    members = topology.SERVICES * topology.CLUSTERS * topology.MEMBERS
    if args.events > 2 * members:
        raise SystemExit(f"--events: at most {2 * members}, twice the members, so that events are told apart")
    snapshot = topology.build_topology()
    broker = Broker(args.transport, home)
    try:
        plane = control_plane(args.transport, broker.url)
        try:
            figures = {"transport": args.transport, "agents": args.agents, "per_process": args.per_process,
                       "members": members, "snapshot_bytes": len(snapshot), "events": args.events,
                       "rate": args.rate, **play("pca", args, broker, plane, home / "pca", snapshot, members)}
            if not args.no_baseline:
                bare = play("bare", args, broker, plane, home / "bare", snapshot, members)
                figures.update({f"baseline_{key}": bare[key] for key in (
                    "p50_ms", "p99_ms", "snapshot_apply_p99_ms", "lost")})
                figures["baseline_cpu_idle_pct"] = bare["agent_cpu_idle_pct"]
                figures["baseline_cpu_us_per_delivery"] = bare["agent_cpu_us_per_delivery"]
                figures["baseline_rss_per_client_mb"] = bare["rss_per_agent_mb"]
                figures["ratio_cpu_vs_baseline"] = round(
                    figures["agent_cpu_us_per_delivery"] / bare["agent_cpu_us_per_delivery"], 2)
        finally:
            plane.close()
    finally:
        broker.stop()
    return figures


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments()
    sys.path.insert(0, str(ROOT))  # tests/support's brokers
    sys.path.insert(0, str(ROOT / "bench"))  # bench/topology.py
    home = Path(tempfile.mkdtemp(prefix="pca-fleet-", dir="/tmp"))  # short: control sockets live in it
    try:
        figures = run(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
        return 0
    brokers = {"mqtt": "Mosquitto", "amqp": "RabbitMQ (AMQP 1.0)", "kafka": "Tansu (Kafka)"}
    print(f"{figures['agents']} agents ({figures['per_process']} per process) on one "
          f"{brokers[figures['transport']]}, a topology of {figures['members']:,} members "
          f"({figures['snapshot_bytes']:,} bytes)")
    print(f"  member event to every agent's model: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
          f"({figures['events']} events at {figures['rate']}/s; lost {figures['lost']})")
    print(f"  complete topology applied, p99 over the agents: {figures['snapshot_apply_p99_ms']} ms")
    print(f"  idle CPU of the agents: {figures['agent_cpu_idle_pct']} % of a core; "
          f"RSS per agent {figures['rss_per_agent_mb']} MB; broker CPU while events flowed "
          f"{figures['broker_cpu_pct']} %; CPU per delivery {figures['agent_cpu_us_per_delivery']} us")
    if "ratio_cpu_vs_baseline" in figures:
        print(f"  bare clients: p50 {figures['baseline_p50_ms']} ms, p99 {figures['baseline_p99_ms']} ms, "
              f"CPU per delivery {figures['baseline_cpu_us_per_delivery']} us (lost "
              f"{figures['baseline_lost']}); pca / bare CPU per delivery: {figures['ratio_cpu_vs_baseline']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
