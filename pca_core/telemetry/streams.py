"""The record streams the core emits, ``logs`` and ``health``, as the log publishers receive them.

A publisher is opened with the definitions of the streams it receives before its first batch
(:meth:`pca_core.api.LogPublisher.open`). Each definition lists the fields of its records, typed and in a
fixed order, and carries the member's identity as ``properties``, for a sink that names its streams after
the member, the cluster or the tenant (a WSO2 databridge, an index).
"""

from __future__ import annotations

from typing import Final

from pca_core.api.log_publisher import Attribute, AttributeType, StreamDefinition
from pca_core.stratos.payload import Identity

__all__ = [
    "HEALTH",
    "HEALTH_VERSION",
    "LOGS",
    "LOGS_VERSION",
    "core_streams",
    "health_stream",
    "identity_properties",
    "log_fields",
    "logs_stream",
]

LOGS: Final = "logs"
HEALTH: Final = "health"
LOGS_VERSION: Final = "1.0.0"
HEALTH_VERSION: Final = "1.0.0"

_S = AttributeType.STRING

# What the log tailer puts in every record: the line, the name its file was found under, and the ids
# of the member and cluster (given to it as extra fields, see log_fields).
_LOGS_ATTRIBUTES = (
    Attribute("line", _S),
    Attribute("path", _S),
    Attribute("member_id", _S),
    Attribute("cluster_id", _S),
)

# What the health sampler (pca_core.agent.health) puts in every record, in the order of the Stratos health
# stream's payload after the two that lead (the statistic's name and its value).
_HEALTH_ATTRIBUTES = (
    Attribute("name", _S),
    Attribute("value", AttributeType.DOUBLE),
    Attribute("cluster_id", _S),
    Attribute("cluster_instance_id", _S),
    Attribute("network_partition_id", _S),
    Attribute("member_id", _S),
    Attribute("partition_id", _S),
)


def identity_properties(identity: Identity) -> dict[str, str]:
    """The member's identity as stream properties; an id the payload did not give is an empty string.

    Keys: ``application_id``, ``service_name``, ``cluster_id``, ``cluster_instance_id``, ``member_id``,
    ``network_partition_id``, ``partition_id``, ``tenant_id``, ``cartridge_alias``.
    """
    return {
        "application_id": identity.application_id,
        "service_name": identity.service_name,
        "cluster_id": identity.cluster_id,
        "cluster_instance_id": identity.cluster_instance_id or "",
        "member_id": identity.member_id or "",
        "network_partition_id": identity.network_partition_id or "",
        "partition_id": identity.partition_id or "",
        "tenant_id": identity.tenant_id,
        "cartridge_alias": identity.cartridge_alias or "",
    }


def log_fields(identity: Identity) -> dict[str, str]:
    """The identity fields the log tailer adds to every ``logs`` record (``member_id``, ``cluster_id``)."""
    return {"member_id": identity.member_id or "", "cluster_id": identity.cluster_id}


def logs_stream(identity: Identity) -> StreamDefinition:
    """The ``logs`` stream: one record per line of a tailed file."""
    return StreamDefinition(LOGS, LOGS_VERSION, _LOGS_ATTRIBUTES,
                            description="lines appended to the instance's log files",
                            properties=identity_properties(identity))


def health_stream(identity: Identity) -> StreamDefinition:
    """The ``health`` stream: one record per statistic (``memory_consumption``, ``load_average``) and tick."""
    return StreamDefinition(HEALTH, HEALTH_VERSION, _HEALTH_ATTRIBUTES,
                            description="the instance's health statistics, in percent",
                            properties=identity_properties(identity))


def core_streams(identity: Identity) -> tuple[StreamDefinition, ...]:
    """Every stream the core emits records on, for the member ``identity``."""
    return (logs_stream(identity), health_stream(identity))
