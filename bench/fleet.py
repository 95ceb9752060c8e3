#!/usr/bin/env python3
"""Fleet: many agents on one Mosquitto; how long a member event takes to reach every agent's model.

The script starts a Mosquitto of its own (a free port on 127.0.0.1) and ``--agents`` real agents (the
core's ``Runtime`` and ``Agent`` with the mqtt transport, each its own state directory, member and broker
connection), ``--per-process`` of them in each host process (``--per-process 1``: a process per agent, as
in production; more: agents sharing one interpreter, which the core allows: every agent owns its threads,
state and connection, and nothing in the core is process-global). The agents' own members are not in the
topology, so each one stays waiting for its initialization and applies every topology event to its model:
the work a member of a big cluster does for the others.

A paho client plays the control plane: once every agent is connected it publishes a CompleteTopologyEvent
of ``--members`` members (``bench/topology.py``'s, 20 services x 5 clusters), waits until every agent's
model holds them all, then publishes ``--events`` member events (MemberStartedEvent, then
MemberActivatedEvent, on existing members; at most two per member) at ``--rate`` per second, QoS 1, then
stays quiet for ``--idle`` seconds.

Each agent notes, on its topology model's change callback, when each member's change arrived (wall clock,
the same machine). JSON keys:

- ``p50_ms``, ``p99_ms``: per event, from its publish to the last agent's model having it; the median and
  the 99th percentile over the events (goal p99 <= 1000 ms at 500 agents);
- ``snapshot_apply_p99_ms``: from the snapshot's publish to an agent's model holding every member, the
  99th percentile over the agents (transfer of the snapshot by the broker included);
- ``agent_cpu_idle_pct``: the agent processes' CPU during the quiet period, in percent of one core;
- ``rss_per_agent_mb``: the host processes' resident memory after the run, divided by the agents;
- ``broker_cpu_pct``: Mosquitto's CPU while the events flowed, in percent of one core;
- ``agent_cpu_us_per_delivery``: the host processes' CPU from the first event's publish until every agent
  had every event, per event and agent (what one delivery costs an agent, its idle work included, and the
  host's answers to the benchmark's polls for what arrived: an upper bound);
- ``lost``: (agent, event) pairs that never arrived (goal 0).

Usage: python bench/fleet.py [--json] [--agents N] [--per-process K] [--members M] [--events E] [--rate R]
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


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--agents", type=int, default=50, help="agents (50)")
    parser.add_argument("--per-process", type=int, default=1, help="agents per host process (1)")
    parser.add_argument("--members", type=int, default=10_000, help="members of the topology (10,000)")
    parser.add_argument("--events", type=int, default=300, help="member events (300)")
    parser.add_argument("--rate", type=float, default=20.0, help="member events per second (20)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of quiet measured at the end (10)")
    return parser.parse_args()


# --- The agents' side (host processes) ----------------------------------------------------------------


def _host(conn: Any, root: str, broker: str, home: str, first: int, count: int, members: int) -> None:
    """A host process: ``count`` agents, reporting when their models changed, until told to stop."""
    sys.path.insert(0, root)
    import logging

    from pca_core.agent.lifecycle import Agent
    from pca_core.config import build
    from pca_core.runtime.runtime import Runtime
    from pca_core.stratos.topology.changes import MemberAdded, MemberStatusChanged

    logging.basicConfig(level=logging.ERROR)
    agents: list[tuple[Runtime, Agent]] = []
    seen: list[dict[str, float]] = []  # per agent: "member status" -> when that change arrived
    applied: list[float | None] = []  # per agent: when its model held every member of the snapshot
    for index in range(first, first + count):
        state = Path(home) / f"a{index}"
        member = f"fleet.member-{index}"
        tree = {"transport": {"plugin": "mqtt", "urls": [broker], "client_id": f"fleet-{index}"},
                "agent": {"state_dir": str(state), "workers": 1, "topology_request_interval": 600},
                "health": {"enabled": False},
                "payload": {"APPLICATION_ID": "app-1", "SERVICE_NAME": "fleet", "CLUSTER_ID": "fleet.domain",
                            "MEMBER_ID": member, "PORTS": "1", "MULTITENANT": "false", "TENANT_ID": "-1234"}}
        runtime = Runtime(build(tree, source="fleet", environ={}), source="fleet")
        runtime.load()
        agent = Agent(runtime, threading.Event())
        mine: dict[str, float] = {}
        slot = len(applied)
        applied.append(None)
        added = [0]

        def observe(change: Any, mine: dict[str, float] = mine, slot: int = slot,
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
        agents.append((runtime, agent))
        seen.append(mine)
    conn.send(("ready", os.getpid()))
    while True:
        command = conn.recv()
        if command == "applied":
            conn.send(applied)
        elif command == "seen":
            conn.send(seen)
        else:
            break
    for runtime, _agent in agents:
        runtime.stop(5)
    conn.send("stopped")


class Host:
    """A host process of agents."""

    def __init__(self, broker: str, home: Path, first: int, count: int, members: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_host, args=(child, str(ROOT), broker, str(home), first, count,
                                                            members), daemon=True)
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


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """Starts the broker and the agents, plays the control plane, returns the figures."""
    import paho.mqtt.client as mqtt
    import topology  # bench/topology.py
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.support.mosquitto import Mosquitto

    topology.MEMBERS = max(1, args.members // (topology.SERVICES * topology.CLUSTERS))
    members = topology.SERVICES * topology.CLUSTERS * topology.MEMBERS
    if args.events > 2 * members:
        raise SystemExit(f"--events: at most {2 * members}, twice the members, so that events are told apart")
    snapshot = topology.build_topology()
    broker = Mosquitto(home / "mosquitto", extra=("max_queued_messages 0", "message_size_limit 0"))
    broker.start()
    hosts: list[Host] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-control-plane")
    try:
        for first in range(0, args.agents, args.per_process):
            hosts.append(Host(broker.url, home, first, min(args.per_process, args.agents - first), members))
        for host in hosts:
            host.ready()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        from pca_core.stratos import events

        published_snapshot = time.time()
        client.publish(events.CompleteTopologyEvent.TOPIC, snapshot, qos=1).wait_for_publish(START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            applied = [t for host in hosts for t in host.ask("applied")]
            if all(t is not None for t in applied) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the benchmark's driver polls the hosts
        if any(t is None for t in applied):
            raise RuntimeError("not every agent applied the complete topology in time")
        broker_cpu = cpu_seconds(broker.pid)
        flow_cpu = sum(cpu_seconds(host.pid) for host in hosts)
        sent: dict[str, float] = {}
        interval = 1.0 / args.rate
        start = time.monotonic()
        for i in range(args.events):
            member_id, topic, body = member_event(i, members)
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[member_id] = time.time()
            client.publish(topic, body, qos=1)
        flow_seconds = time.monotonic() - start
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu
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
        client.loop_stop()
        client.disconnect()
        for host in hosts:
            host.stop()
        broker.stop()
    latencies, lost = [], 0
    for member_id, at in sent.items():
        arrivals = [agent.get(member_id) for agent in seen]
        lost += sum(t is None for t in arrivals)
        known = [t for t in arrivals if t is not None]
        if known:
            latencies.append((max(known) - at) * 1000)
    snapshot_ms = [(t - published_snapshot) * 1000 for t in applied]
    return {"agents": args.agents, "per_process": args.per_process, "members": members,
            "snapshot_bytes": len(snapshot), "events": args.events, "rate": args.rate,
            "p50_ms": round(statistics.median(latencies), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "snapshot_apply_p99_ms": round(percentile(snapshot_ms, 99), 1),
            "agent_cpu_idle_pct": round(idle_cpu / args.idle * 100, 2),
            "rss_per_agent_mb": round(rss / args.agents, 1),
            "broker_cpu_pct": round(broker_cpu / flow_seconds * 100, 1),
            "agent_cpu_us_per_delivery": round(flow_cpu / (args.events * args.agents) * 1e6, 1), "lost": lost}


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments()
    sys.path.insert(0, str(ROOT))  # tests/support/mosquitto.py
    sys.path.insert(0, str(ROOT / "bench"))  # bench/topology.py
    home = Path(tempfile.mkdtemp(prefix="pca-fleet-", dir="/tmp"))  # short: control sockets live in it
    try:
        figures = run(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{figures['agents']} agents ({figures['per_process']} per process) on one Mosquitto, a topology "
          f"of {figures['members']:,} members ({figures['snapshot_bytes']:,} bytes)")
    print(f"  member event to every agent's model: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms "
          f"({figures['events']} events at {figures['rate']}/s; lost {figures['lost']})")
    print(f"  complete topology applied, p99 over the agents: {figures['snapshot_apply_p99_ms']} ms")
    print(f"  idle CPU of the agents: {figures['agent_cpu_idle_pct']} % of a core; "
          f"RSS per agent {figures['rss_per_agent_mb']} MB; broker CPU while events flowed "
          f"{figures['broker_cpu_pct']} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
