"""The bad input of the soak: what an attacker or a broken publisher puts on the agent's topics.

Each entry is a topic the agent subscribes to and a body built on demand (the large ones are megabytes,
so nothing holds them longer than one publish). The corpus covers deep nesting, huge numbers, invalid
UTF-8, bodies that are not JSON, wrong types, unknown event classes on valid topic trees and huge string
fields; :func:`oversize` gives messages larger than the default ``transport.max_message_size`` (16 MiB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

DEPTH = 50_000
HUGE_STRING = 5 * 1024 * 1024
OVERSIZE = 17 * 1024 * 1024


@dataclass(frozen=True)
class BadInput:
    """One message of the corpus.

    Attributes:
        name: what it is, for the report.
        topic: where it is published.
        body: builds its bytes.
    """

    name: str
    topic: str
    body: Callable[[], bytes]


def _json(value: object) -> Callable[[], bytes]:
    return lambda: json.dumps(value).encode()


def _deep_object() -> bytes:
    return b'{"a":' * DEPTH + b"1" + b"}" * DEPTH


def _deep_array() -> bytes:
    return b"[" * DEPTH + b"]" * DEPTH


def _huge(field: str, extra: dict[str, object] | None = None, size: int = HUGE_STRING) -> Callable[[], bytes]:
    """A valid JSON object whose ``field`` is a string of ``size`` bytes."""
    return lambda: json.dumps({**(extra or {}), field: "x" * size}).encode()


def corpus(cluster_id: str, member_id: str) -> list[BadInput]:
    """The bad inputs; some name the agent's own cluster and ``member_id``, another member of it.

    A huge field on a known entity is stored by the model; the soak sends the same entities every round,
    so what the model holds stays the same size.
    """
    port = {"80": {"protocol": "http", "value": 80, "proxy": 80}}
    member = {"serviceName": "php", "clusterId": cluster_id, "clusterInstanceId": f"{cluster_id}-1",
              "networkPartitionId": "network-partition-1", "partitionId": "partition-1"}
    return [
        BadInput("deep object", "topology/MemberActivatedEvent", _deep_object),
        BadInput("deep array", "tenant/CompleteTenantEvent", _deep_array),
        BadInput("deep field", "topology/CompleteTopologyEvent",
                 lambda: b'{"topology":' + _deep_object() + b"}"),
        BadInput("huge integer", "tenant/TenantRemovedEvent",
                 lambda: b'{"tenantId":' + b"9" * 100_000 + b"}"),
        BadInput("huge float", "tenant/TenantUpdatedEvent",
                 lambda: b'{"tenantId":1' + b"0" * 400 + b'.5e99999,"tenantDomain":"t"}'),
        BadInput("NaN literal", "tenant/TenantCreatedEvent", lambda: b'{"tenant":{"tenantId":NaN}}'),
        BadInput("invalid UTF-8", "topology/MemberStartedEvent", lambda: b'{"memberId":"\xff\xfe\xc0\xaf"}'),
        BadInput("not JSON", "instance/notifier/InstanceCleanupMemberEvent", lambda: b"\x00\x01\x02garbage"),
        BadInput("empty body", "topology/CompleteTopologyEvent", lambda: b""),
        BadInput("null body", "domain/mapping/DomainMappingAddedEvent", lambda: b"null"),
        BadInput("truncated JSON", "application/signup/ApplicationSignUpAddedEvent",
                 lambda: b'{"applicationId":"app","tenantId":'),
        BadInput("wrong type: list for object", "topology/CompleteTopologyEvent", _json({"topology": []})),
        BadInput("wrong type: string for list", "tenant/CompleteTenantEvent", _json({"tenants": "all"})),
        BadInput("wrong type: number for string", "topology/MemberActivatedEvent",
                 _json({**member, "memberId": 5, "portMap": "8080"})),
        BadInput("wrong type: top-level array", "application/signup/CompleteApplicationSignUpsEvent",
                 _json([1, 2, 3])),
        BadInput("unknown class: topology", "topology/NoSuchEvent", _json({"memberId": member_id})),
        BadInput("unknown class: tenant", "tenant/TenantExplodedEvent", _json({"tenantId": 1})),
        BadInput("unknown class: notifier", "instance/notifier/SelfDestructEvent", _json({})),
        BadInput("unknown class: deep topic", "topology/a/b/c/MemberActivatedEventX", _json({})),
        BadInput("huge field: unknown member", "topology/MemberActivatedEvent",
                 _huge("memberId", {**member, "defaultPrivateIP": "10.0.0.1"})),
        BadInput("huge field: known member", "topology/MemberActivatedEvent",
                 _huge("defaultPublicIP", {**member, "memberId": member_id, "defaultPrivateIP": "10.0.0.1",
                                           "portMap": port})),
        BadInput("huge field: tenant domain", "tenant/TenantCreatedEvent",
                 lambda: json.dumps({"tenant": {"tenantId": 999, "tenantDomain": "x" * HUGE_STRING}})
                 .encode()),
        BadInput("huge field: repo URL", "instance/notifier/ArtifactUpdatedEvent",
                 _huge("repoURL", {"clusterId": "other.domain", "status": "Updated", "tenantId": "1"})),
        BadInput("huge field: signup application", "application/signup/ApplicationSignUpRemovedEvent",
                 _huge("applicationId", {"tenantId": 5})),
        BadInput("huge field: domain name", "domain/mapping/DomainMappingRemovedEvent",
                 _huge("domainName", {"clusterId": cluster_id, "tenantId": 5})),
    ]


def oversize(index: int, topology: Callable[[str], bytes]) -> BadInput:
    """The ``index``-th message larger than 16 MiB; four kinds in turn.

    Args:
        index: which one (0-based).
        topology: builds the current complete topology event with a service property of the given value
            (so that one kind is a valid, consistent snapshot that is merely too large).
    """
    kinds = [
        BadInput("oversize: valid complete topology", "topology/CompleteTopologyEvent",
                 lambda: topology("x" * OVERSIZE)),
        BadInput("oversize: wrong type", "topology/MemberActivatedEvent",
                 lambda: b"[" + b"1," * (OVERSIZE // 2) + b"1]"),
        BadInput("oversize: not JSON", "tenant/TenantCreatedEvent", lambda: b"\xff" * OVERSIZE),
        BadInput("oversize: huge field", "instance/notifier/ArtifactUpdatedEvent",
                 _huge("repoURL", {"clusterId": "other.domain", "status": "Updated"}, OVERSIZE)),
    ]
    return kinds[index % len(kinds)]
