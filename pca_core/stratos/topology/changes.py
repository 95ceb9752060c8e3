"""What the topology model announces: one change per service, cluster, instance or member touched.

Statuses are the wire strings; compare them with :class:`~pca_core.stratos.events.MemberStatus` and
:class:`~pca_core.stratos.events.ClusterStatus` members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pca_core.stratos.events import ClusterStatusStateManager, MemberStatusStateManager


@dataclass(frozen=True, slots=True)
class ServiceAdded:
    """A service entered the topology (its clusters follow as ClusterAdded)."""

    service: str


@dataclass(frozen=True, slots=True)
class ServiceRemoved:
    """A service left the topology (announced after ClusterRemoved for each of its clusters)."""

    service: str


@dataclass(frozen=True, slots=True)
class ServiceUpdated:
    """A service's own data (type, ports, properties) changed; only a complete topology does this."""

    service: str


@dataclass(frozen=True, slots=True)
class ClusterAdded:
    """A cluster entered the topology (its instances and members follow as their own Added changes)."""

    service: str
    cluster_id: str


@dataclass(frozen=True, slots=True)
class ClusterRemoved:
    """A cluster left the topology (announced after MemberRemoved and ClusterInstanceRemoved for its own)."""

    service: str
    cluster_id: str


@dataclass(frozen=True, slots=True)
class ClusterUpdated:
    """A cluster's own data changed, or the details (not the status) of one of its instances.

    Its own data: access URLs, load-balancer IPs, host names, properties, policies, Kubernetes services.
    """

    service: str
    cluster_id: str


@dataclass(frozen=True, slots=True)
class ClusterInstanceAdded:
    """A cluster instance entered the topology; its status follows as ClusterInstanceStatusChanged."""

    service: str
    cluster_id: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class ClusterInstanceRemoved:
    """A cluster instance left the topology (ClusterInstanceTerminatedEvent, or absent from a snapshot)."""

    service: str
    cluster_id: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class ClusterInstanceStatusChanged:
    """A cluster instance's status changed; ``old`` is None when the instance just entered the topology."""

    service: str
    cluster_id: str
    instance_id: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class MemberAdded:
    """A member entered the topology; its status follows as MemberStatusChanged."""

    service: str
    cluster_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    """A member left the topology (MemberTerminatedEvent, or absent from a snapshot)."""

    service: str
    cluster_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class MemberStatusChanged:
    """A member's status changed; ``old`` is None when the member just entered the topology.

    This is the one change to watch for "member X became Active", however the member got there. The
    fields an event updates along with the status (IPs, ports, instance id) are already in the model.
    """

    service: str
    cluster_id: str
    member_id: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """A member's data (IPs, ports, instance id, properties, ...) changed without a status change."""

    service: str
    cluster_id: str
    member_id: str


TopologyChange = (
    ServiceAdded | ServiceRemoved | ServiceUpdated
    | ClusterAdded | ClusterRemoved | ClusterUpdated
    | ClusterInstanceAdded | ClusterInstanceRemoved | ClusterInstanceStatusChanged
    | MemberAdded | MemberRemoved | MemberStatusChanged | MemberUpdated
)
"""Any change the topology model announces."""


Changes = list[TopologyChange]
"""What each update step appends to."""

EMPTY: Mapping[str, Any] = MappingProxyType({})
"""An empty mapping to iterate where the wire has a null map."""


def status_of(manager: MemberStatusStateManager | ClusterStatusStateManager | None) -> str | None:
    """The current status: the top of the state stack."""
    if manager is None or not manager.state_stack:
        return None
    return manager.state_stack[-1]
