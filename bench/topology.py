#!/usr/bin/env python3
"""Topology: decode+apply of a complete topology and incremental member events, against json.loads.

Builds a Gson-shaped CompleteTopologyEvent of 10,000 members (20 services x 5 clusters x 100 members)
and measures, in one run: ``json.loads`` of its bytes (the floor), pca's decode+apply into a fresh
model, pca's handling of an identical repeat, and 100,000 incremental member events
(MemberStartedEvent/MemberActivatedEvent on existing members). Each figure is the best of several runs.

Usage: python bench/topology.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from pca_core.stratos import events
from pca_core.stratos.topology import TopologyModel

SERVICES, CLUSTERS, MEMBERS = 20, 5, 100
MEMBER_EVENTS = 100_000


def port(value: int, proxy: int) -> events.Port:
    """An http port."""
    return events.Port(protocol="http", value=value, proxy=proxy)


def build_topology() -> bytes:
    """The bytes of a complete topology event of SERVICES x CLUSTERS x MEMBERS members."""
    services = {}
    for s in range(SERVICES):
        name = f"service-{s}"
        clusters = {}
        for c in range(CLUSTERS):
            cluster_id = f"{name}.cluster-{c}.domain"
            members = {}
            for m in range(MEMBERS):
                member_id = f"{cluster_id}.member-{m}"
                members[member_id] = events.Member(
                    service_name=name, cluster_id=cluster_id, member_id=member_id,
                    cluster_instance_id=f"{cluster_id}-1", network_partition_id="network-partition-1",
                    partition_id="partition-1", instance_id=f"i-{s:02d}{c:02d}{m:04d}",
                    init_time=1450000000000, port_map={"8280": port(80, 8280), "8243": port(443, 8243)},
                    member_public_ips=[f"20.{s}.{c}.{m}"], default_public_ip=f"20.{s}.{c}.{m}",
                    member_private_ips=[f"10.{s}.{c}.{m}"], default_private_ip=f"10.{s}.{c}.{m}",
                    properties={"prop1": "value1"},
                    member_state_manager=events.MemberStatusStateManager(
                        state_stack=["Created", "Initialized", "Starting", "Active"], identifier=member_id),
                    load_balancing_ip_type="Private")
            clusters[cluster_id] = events.Cluster(
                service_name=name, cluster_id=cluster_id, autoscale_policy_name="autoscale-policy-1",
                deployment_policy_name="deployment-policy-1", host_names=[f"{cluster_id}.example.org"],
                tenant_range="*", is_lb_cluster=False, is_kubernetes_cluster=False, member_map=members,
                app_id="app-1", properties={"payload_parameter.X": "y"})
        services[name] = events.Service(service_name=name, service_type="SingleTenant",
                                        cluster_id_cluster_map=clusters,
                                        port_map={"8280": port(80, 8280)}, properties={"a": "b"})
    topology = events.Topology(cluster_map={}, service_map=services)
    return events.encode(events.CompleteTopologyEvent(topology=topology))


def member_events() -> list[tuple[str, bytes]]:
    """MEMBER_EVENTS status events for existing members, Started and Activated in turn."""
    out = []
    for i in range(MEMBER_EVENTS):
        s, c, m = i % SERVICES, (i // SERVICES) % CLUSTERS, (i // (SERVICES * CLUSTERS)) % MEMBERS
        name, cluster_id = f"service-{s}", f"service-{s}.cluster-{c}.domain"
        ids = {"service_name": name, "cluster_id": cluster_id, "member_id": f"{cluster_id}.member-{m}",
               "cluster_instance_id": f"{cluster_id}-1", "network_partition_id": "network-partition-1",
               "partition_id": "partition-1"}
        event: events.Event
        if (i // (SERVICES * CLUSTERS * MEMBERS)) % 2 == 0:
            event = events.MemberStartedEvent(**ids, status="Starting")
        else:
            event = events.MemberActivatedEvent(**ids, port_map={"8280": port(80, 8280)},
                                                member_private_ips=[f"10.{s}.{c}.{m}"],
                                                default_private_ip=f"10.{s}.{c}.{m}")
        out.append((event.TOPIC, events.encode(event)))
    return out


def best(runs: int, fn: Callable[[], object]) -> float:
    """The shortest of ``runs`` timings of ``fn()``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    """Runs the benchmark and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    payload = build_topology()
    topic = events.CompleteTopologyEvent.TOPIC

    loads = best(7, lambda: json.loads(payload))
    apply = best(7, lambda: TopologyModel().handle(topic, payload))
    model = TopologyModel()
    model.handle(topic, payload)
    # Each repeat arrives as a new bytes object, as from a broker: equal, but not the same object.
    copies = iter([bytes(bytearray(payload)) for _ in range(20)])
    repeat = best(20, lambda: model.handle(topic, next(copies)))
    stream = member_events()
    handle = model.handle

    def run_stream() -> None:
        for event_topic, body in stream:
            handle(event_topic, body)

    stream_time = best(3, run_stream)
    members = sum(len(c.member_map or {}) for s in model.services.values()
                  for c in (s.cluster_id_cluster_map or {}).values())
    figures = {
        "members": members,
        "bytes": len(payload),
        "json_loads_ms": round(loads * 1000, 2),
        "apply_ms": round(apply * 1000, 2),
        "repeat_ms": round(repeat * 1000, 4),
        "ratio_apply_vs_json_loads": round(apply / loads, 3),
        "ratio_repeat_vs_json_loads": round(repeat / loads, 4),
        "member_events_per_s": round(len(stream) / stream_time),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"complete topology: {members} members, {len(payload):,} bytes")
    print(f"  json.loads (floor)      {figures['json_loads_ms']:9.2f} ms")
    print(f"  pca decode+apply        {figures['apply_ms']:9.2f} ms   "
          f"{figures['ratio_apply_vs_json_loads']:.3f}x json.loads (goal <= 2.0)")
    print(f"  pca identical repeat    {figures['repeat_ms']:9.4f} ms   "
          f"{figures['ratio_repeat_vs_json_loads']:.4f}x json.loads (goal <= 0.1)")
    print(f"incremental member events {figures['member_events_per_s']:>9,} events/s (goal >= 100,000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
