"""The topology model: services, clusters, cluster instances and members, kept from the topology events.

The model follows the Java receivers (``stratos/processors.md``): it is empty and uninitialized until the
first ``CompleteTopologyEvent``, then applies each incremental event the way the Java processor does,
field by field. Events that arrive before the first complete topology are ignored (Java's initialization
gate). An event that names a service, cluster, cluster instance or member the model does not hold is
dropped with a debug log, as Java's gates drop it; an event is never a reason for an exception.

Where pca does better than Java:

- **Every complete topology counts.** Java applies the first snapshot and ignores the rest, so one lost
  event stays lost until the process restarts. Here each later snapshot is reconciled into the model,
  and its differences are announced with the same changes the equivalent incremental events produce, so
  an observer never cares which way a change arrived. A snapshot byte-identical to the one the model
  already reflects (Cloud Controller republishes it every minute) is skipped without being decoded.
- **No exception paths.** Where a Java processor throws (a missing cluster instance, a missing list), the
  event is dropped or the list read as empty. A MemberActivatedEvent without a private IP or ports is
  dropped, as Java's exception drops it, but with a warning instead of a stack trace.
- **One cluster index.** ``Topology.cluster_map`` always holds exactly the clusters of the services (Java
  adds to it on some paths and never prunes it).
- ServiceCreatedEvent keeps the service's ``properties`` (Java drops them, so its model disagrees with the
  next snapshot); invalid status transitions are applied, as in Java, without Java's ERROR log (its
  transition table contradicts the real flows, e.g. Active to ReadyToShutDown).

The Java topology filters (``stratos.topology.*.filter``, processors.md §5) are not implemented: the agent
configures none, and with none configured they exclude nothing.

The model keeps the decoded wire objects (the ``pca_core.stratos.events`` Structs) and updates them in place;
an entity keeps its object for as long as it stays in the model. Updates are applied on one thread (the
dispatcher); another thread that reads more than one value should hold :attr:`TopologyModel.lock`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar

from pca_core.stratos import events
from pca_core.stratos.events import (
    Cluster,
    ClusterInstance,
    ClusterStatus,
    ClusterStatusStateManager,
    CompleteTopologyEvent,
    Member,
    MemberStatus,
    MemberStatusStateManager,
    Service,
    Topology,
)
from pca_core.stratos.snapshot import SnapshotModel

__all__ = [
    "ClusterAdded", "ClusterInstanceAdded", "ClusterInstanceRemoved", "ClusterInstanceStatusChanged",
    "ClusterRemoved", "ClusterUpdated", "MemberAdded", "MemberRemoved", "MemberStatusChanged",
    "MemberUpdated", "ServiceAdded", "ServiceRemoved", "ServiceUpdated", "TopologyChange", "TopologyModel",
]

_log = logging.getLogger(__name__)


# --- Change notifications -------------------------------------------------------------------------------
# Statuses are the wire strings; compare them with MemberStatus / ClusterStatus members.


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


# --- Helpers ----------------------------------------------------------------------------------------------

_Changes = list[TopologyChange]  # what each update step appends to

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# The fields that hold an entity's children or history, which a reconciliation compares on its own.
_SERVICE_CHILDREN = frozenset({"cluster_id_cluster_map"})
_CLUSTER_CHILDREN = frozenset({"member_map", "instance_id_to_instance_context_map"})
_INSTANCE_HISTORY = frozenset({"life_cycle_state_manager"})
_MEMBER_HISTORY = frozenset({"member_state_manager"})


def _status(manager: MemberStatusStateManager | ClusterStatusStateManager | None) -> str | None:
    """The current status: the top of the state stack."""
    if manager is None or not manager.state_stack:
        return None
    return manager.state_stack[-1]


def _assign(old: Any, new: Any, skip: frozenset[str]) -> bool:
    """Copies every field of ``new`` but those in ``skip`` into ``old``; tells whether any differed."""
    changed = False
    for name in old.__struct_fields__:
        if name not in skip:
            value = getattr(new, name)
            if getattr(old, name) != value:
                setattr(old, name, value)
                changed = True
    return changed


def _take_initialized_fields(member: Member, event: events.MemberInitializedEvent) -> None:
    # Java overwrites these even with null.
    member.instance_id = event.instance_id
    member.default_public_ip = event.default_public_ip
    member.member_public_ips = event.member_public_ips
    member.default_private_ip = event.default_private_ip
    member.member_private_ips = event.member_private_ips


def _take_activated_fields(member: Member, event: events.MemberActivatedEvent) -> None:
    # Ports are merged (Gson keys them by proxy already), private IPs overwritten, public IPs left alone.
    if member.port_map is None:
        member.port_map = {}
    member.port_map.update(event.port_map or _EMPTY)
    member.default_private_ip = event.default_private_ip
    member.member_private_ips = event.member_private_ips


# --- The model --------------------------------------------------------------------------------------------


class TopologyModel(SnapshotModel[TopologyChange]):
    """The agent's view of the Stratos topology, kept from the ``topology/#`` events.

    Each update returns the changes it made and then tells them to the observers (see
    :class:`~pca_core.stratos.observe.Observable`), in the same
    order: a parent's ``Added`` before its children's,
    children's ``Removed`` before their parent's. An update that changes nothing announces nothing.
    """

    COMPLETE = CompleteTopologyEvent
    GATED = True  # Java's gate: nothing but a complete topology is applied before the first one
    # HANDLED is the set of keys of _HANDLERS, the table at the end of the class.

    def __init__(self) -> None:
        super().__init__()
        self._services: dict[str, Service] = {}
        self._clusters: dict[str, Cluster] = {}
        self._members: dict[str, Member] = {}
        self._topology = Topology(service_map=self._services, cluster_map=self._clusters)
        self._services_view: Mapping[str, Service] = MappingProxyType(self._services)

    # --- Reading -----------------------------------------------------------------------------------------

    @property
    def services(self) -> Mapping[str, Service]:
        """Every service by name: a read-only view of the live map.

        Iterate it under :attr:`lock` from another thread than the one applying updates.
        """
        return self._services_view

    @property
    def topology(self) -> Topology:
        """The live model as a wire ``Topology`` (``events.encode`` writes it as a snapshot); read only."""
        return self._topology

    def service(self, name: str) -> Service | None:
        """The service called ``name``, or None."""
        return self._services.get(name)

    def cluster(self, cluster_id: str) -> Cluster | None:
        """The cluster ``cluster_id`` of whichever service holds it, or None."""
        return self._clusters.get(cluster_id)

    def member(self, member_id: str) -> Member | None:
        """The member ``member_id`` of whichever cluster holds it, or None."""
        return self._members.get(member_id)

    def member_status(self, member_id: str) -> str | None:
        """The member's current status (a :class:`~pca_core.stratos.events.MemberStatus` value), or None."""
        member = self._members.get(member_id)
        return None if member is None else _status(member.member_state_manager)

    # --- Updating ----------------------------------------------------------------------------------------

    def _apply_event(self, event: events.Event) -> _Changes | None:
        return self._HANDLERS[type(event)](self, event)

    # --- Complete topology: reconciliation ---------------------------------------------------------------

    def _complete_topology(self, event: CompleteTopologyEvent) -> _Changes | None:
        topology = event.topology
        if topology is None or topology.service_map is None:
            _log.warning("CompleteTopologyEvent without topology.serviceMap ignored")
            return None  # says nothing: the model stays uninitialized if it was
        changes = self._reconcile(topology.service_map)
        if not self.initialized:  # this snapshot is the first: the base class sets the flag on return
            _log.info("topology initialized: %d services, %d clusters, %d members",
                      len(self._services), len(self._clusters), len(self._members))
        return changes

    def _reconcile(self, snapshot: dict[str, Service]) -> _Changes:
        # A dict-keyed diff, level by level; a subtree equal to the model's (one C-level comparison of the
        # Structs) is skipped whole, and a new subtree is adopted as decoded.
        changes: _Changes = []
        for name in [name for name in self._services if name not in snapshot]:
            self._untrack_service(name, self._services.pop(name), changes)
        for name, new in snapshot.items():
            old = self._services.get(name)
            if old is None:
                self._services[name] = new
                self._track_service(name, new, changes)
            elif old != new:
                self._reconcile_service(name, old, new, changes)
        return changes

    def _reconcile_service(self, name: str, old: Service, new: Service, changes: _Changes) -> None:
        if _assign(old, new, _SERVICE_CHILDREN):
            changes.append(ServiceUpdated(name))
        if old.cluster_id_cluster_map is None:
            old.cluster_id_cluster_map = {}
        clusters = old.cluster_id_cluster_map
        snapshot = new.cluster_id_cluster_map or _EMPTY
        for cluster_id in [cluster_id for cluster_id in clusters if cluster_id not in snapshot]:
            self._untrack_cluster(name, cluster_id, clusters.pop(cluster_id), changes)
        for cluster_id, cluster in snapshot.items():
            current = clusters.get(cluster_id)
            if current is None:
                clusters[cluster_id] = cluster
                self._track_cluster(name, cluster_id, cluster, changes)
            elif current != cluster:
                self._reconcile_cluster(name, cluster_id, current, cluster, changes)

    def _reconcile_cluster(self, service: str, cluster_id: str, old: Cluster, new: Cluster,
                           changes: _Changes) -> None:
        updated = _assign(old, new, _CLUSTER_CHILDREN)
        instance_changes: _Changes = []
        if old.instance_id_to_instance_context_map is None:
            old.instance_id_to_instance_context_map = {}
        instances = old.instance_id_to_instance_context_map
        snapshot_instances = new.instance_id_to_instance_context_map or _EMPTY
        for instance_id in [i for i in instances if i not in snapshot_instances]:
            del instances[instance_id]
            instance_changes.append(ClusterInstanceRemoved(service, cluster_id, instance_id))
        for instance_id, instance in snapshot_instances.items():
            current = instances.get(instance_id)
            if current is None:
                instances[instance_id] = instance
                self._track_instance(service, cluster_id, instance_id, instance, instance_changes)
            elif current != instance:
                before = _status(current.life_cycle_state_manager)
                after = _status(instance.life_cycle_state_manager)
                updated |= _assign(current, instance, _INSTANCE_HISTORY)
                current.life_cycle_state_manager = instance.life_cycle_state_manager
                if before != after:
                    instance_changes.append(
                        ClusterInstanceStatusChanged(service, cluster_id, instance_id, before, after))
        if updated:
            changes.append(ClusterUpdated(service, cluster_id))
        changes.extend(instance_changes)

        if old.member_map is None:
            old.member_map = {}
        members = old.member_map
        snapshot_members = new.member_map or _EMPTY
        for member_id in [m for m in members if m not in snapshot_members]:
            self._untrack_member(service, cluster_id, member_id, members.pop(member_id), changes)
        for member_id, member in snapshot_members.items():
            current_member = members.get(member_id)
            if current_member is None:
                members[member_id] = member
                self._track_member(service, cluster_id, member_id, member, changes)
            elif current_member != member:
                before = _status(current_member.member_state_manager)
                after = _status(member.member_state_manager)
                details = _assign(current_member, member, _MEMBER_HISTORY)
                current_member.member_state_manager = member.member_state_manager
                if before != after:
                    changes.append(MemberStatusChanged(service, cluster_id, member_id, before, after))
                elif details:
                    changes.append(MemberUpdated(service, cluster_id, member_id))

    # --- Subtrees entering and leaving the model: indexes and Added/Removed changes ----------------------

    def _track_service(self, name: str, service: Service, changes: _Changes) -> None:
        changes.append(ServiceAdded(name))
        for cluster_id, cluster in (service.cluster_id_cluster_map or _EMPTY).items():
            self._track_cluster(name, cluster_id, cluster, changes)

    def _untrack_service(self, name: str, service: Service, changes: _Changes) -> None:
        for cluster_id, cluster in (service.cluster_id_cluster_map or _EMPTY).items():
            self._untrack_cluster(name, cluster_id, cluster, changes)
        changes.append(ServiceRemoved(name))

    def _track_cluster(self, service: str, cluster_id: str, cluster: Cluster,
                       changes: _Changes) -> None:
        self._clusters[cluster_id] = cluster
        changes.append(ClusterAdded(service, cluster_id))
        for instance_id, instance in (cluster.instance_id_to_instance_context_map or _EMPTY).items():
            self._track_instance(service, cluster_id, instance_id, instance, changes)
        for member_id, member in (cluster.member_map or _EMPTY).items():
            self._track_member(service, cluster_id, member_id, member, changes)

    def _untrack_cluster(self, service: str, cluster_id: str, cluster: Cluster,
                         changes: _Changes) -> None:
        for member_id, member in (cluster.member_map or _EMPTY).items():
            self._untrack_member(service, cluster_id, member_id, member, changes)
        for instance_id in cluster.instance_id_to_instance_context_map or _EMPTY:
            changes.append(ClusterInstanceRemoved(service, cluster_id, instance_id))
        if self._clusters.get(cluster_id) is cluster:
            del self._clusters[cluster_id]
        changes.append(ClusterRemoved(service, cluster_id))

    @staticmethod
    def _track_instance(service: str, cluster_id: str, instance_id: str, instance: ClusterInstance,
                        changes: _Changes) -> None:
        changes.append(ClusterInstanceAdded(service, cluster_id, instance_id))
        status = _status(instance.life_cycle_state_manager)
        if status is not None:
            changes.append(ClusterInstanceStatusChanged(service, cluster_id, instance_id, None, status))

    def _track_member(self, service: str, cluster_id: str, member_id: str, member: Member,
                      changes: _Changes) -> None:
        self._members[member_id] = member
        changes.append(MemberAdded(service, cluster_id, member_id))
        status = _status(member.member_state_manager)
        if status is not None:
            changes.append(MemberStatusChanged(service, cluster_id, member_id, None, status))

    def _untrack_member(self, service: str, cluster_id: str, member_id: str, member: Member,
                        changes: _Changes) -> None:
        # The identity check keeps the index right should a malformed topology repeat a member id.
        if self._members.get(member_id) is member:
            del self._members[member_id]
        changes.append(MemberRemoved(service, cluster_id, member_id))

    # --- Lookups that drop an event naming what the model does not hold ----------------------------------

    def _find_cluster(self, event: events.Event, service_name: str | None,
                      cluster_id: str | None) -> Cluster | None:
        service = self._services.get(service_name)
        if service is None:
            _log.debug("%s dropped: no service %r", type(event).__name__, service_name)
            return None
        cluster = service.cluster_id_cluster_map.get(cluster_id) if service.cluster_id_cluster_map else None
        if cluster is None:
            _log.debug("%s dropped: no cluster %r in service %r", type(event).__name__, cluster_id,
                       service_name)
        return cluster

    def _find_instance(self, event: Any) -> tuple[Cluster, ClusterInstance] | None:
        # Java's lookup with a null instance id returns an arbitrary instance (processors.md §13 #8); here a
        # missing id matches nothing.
        cluster = self._find_cluster(event, event.service_name, event.cluster_id)
        if cluster is None:
            return None
        instances = cluster.instance_id_to_instance_context_map
        instance = instances.get(event.instance_id) if instances else None
        if instance is None:
            _log.debug("%s dropped: no instance %r in cluster %r", type(event).__name__, event.instance_id,
                       event.cluster_id)
            return None
        return cluster, instance

    def _find_member(self, event: Any) -> Member | None:
        cluster = self._find_cluster(event, event.service_name, event.cluster_id)
        if cluster is None:
            return None
        member = cluster.member_map.get(event.member_id) if cluster.member_map else None
        if member is None:
            _log.debug("%s dropped: no member %r in cluster %r", type(event).__name__, event.member_id,
                       event.cluster_id)
        return member

    # --- Services and clusters ---------------------------------------------------------------------------

    def _service_created(self, event: events.ServiceCreatedEvent) -> _Changes:
        name = event.service_name
        if name is None or name in self._services:
            return []
        self._services[name] = Service(service_name=name, service_type=event.service_type,
                                       cluster_id_cluster_map={}, port_map=dict(event.port_map or _EMPTY),
                                       properties=event.properties)
        return [ServiceAdded(name)]

    def _service_removed(self, event: events.ServiceRemovedEvent) -> _Changes:
        service = self._services.pop(event.service_name, None)
        if service is None:
            _log.debug("ServiceRemovedEvent: no service %r", event.service_name)
            return []
        changes: _Changes = []
        self._untrack_service(event.service_name, service, changes)
        return changes

    def _add_cluster(self, event: events.Event, cluster: Cluster | None, changes: _Changes) -> None:
        if cluster is None or cluster.cluster_id is None:
            return
        service = self._services.get(cluster.service_name)
        if service is None:
            _log.debug("%s: cluster %r dropped: no service %r", type(event).__name__, cluster.cluster_id,
                       cluster.service_name)
            return
        if service.cluster_id_cluster_map is None:
            service.cluster_id_cluster_map = {}
        if cluster.cluster_id not in service.cluster_id_cluster_map:
            service.cluster_id_cluster_map[cluster.cluster_id] = cluster
            self._track_cluster(cluster.service_name, cluster.cluster_id, cluster, changes)

    def _remove_cluster(self, event: events.Event, service_name: str | None, cluster_id: str | None,
                        changes: _Changes) -> None:
        service = self._services.get(service_name)
        clusters = service.cluster_id_cluster_map if service is not None else None
        cluster = clusters.pop(cluster_id, None) if clusters else None
        if cluster is None:
            _log.debug("%s: no cluster %r in service %r", type(event).__name__, cluster_id, service_name)
            return
        self._untrack_cluster(service_name, cluster_id, cluster, changes)

    def _cluster_created(self, event: events.ClusterCreatedEvent) -> _Changes:
        changes: _Changes = []
        self._add_cluster(event, event.cluster, changes)
        return changes

    def _application_clusters_created(self, event: events.ApplicationClustersCreatedEvent) -> _Changes:
        # Java stops at the first cluster whose service is missing (processors.md §13 #19); here only that
        # cluster is skipped.
        changes: _Changes = []
        for cluster in event.cluster_list or ():
            self._add_cluster(event, cluster, changes)
        return changes

    def _cluster_removed(self, event: events.ClusterRemovedEvent) -> _Changes:
        changes: _Changes = []
        self._remove_cluster(event, event.service_name, event.cluster_id, changes)
        return changes

    def _application_clusters_removed(self, event: events.ApplicationClustersRemovedEvent) -> _Changes:
        changes: _Changes = []
        for data in event.cluster_data or ():
            self._remove_cluster(event, data.service_type, data.cluster_id, changes)
        return changes

    # --- Cluster instances -------------------------------------------------------------------------------

    def _cluster_instance_created(self, event: events.ClusterInstanceCreatedEvent) -> _Changes:
        cluster = self._find_cluster(event, event.service_name, event.cluster_id)
        instance = event.cluster_instance
        if cluster is None or instance is None or instance.instance_id is None:
            return []
        if cluster.instance_id_to_instance_context_map is None:
            cluster.instance_id_to_instance_context_map = {}
        if instance.instance_id in cluster.instance_id_to_instance_context_map:
            return []
        cluster.instance_id_to_instance_context_map[instance.instance_id] = instance
        changes: _Changes = []
        self._track_instance(event.service_name, event.cluster_id, instance.instance_id, instance, changes)
        return changes

    def _cluster_instance_activated(self, event: events.ClusterInstanceActivatedEvent) -> _Changes:
        found = self._find_instance(event)
        if found is None:
            return []
        cluster, instance = found
        if _status(instance.life_cycle_state_manager) == ClusterStatus.ACTIVE:
            return []  # Java skips everything, the URLs and IPs included
        changes: _Changes = []
        # The access URLs of this instance are replaced (None removes them, as Gson would not write a null
        # entry); the load-balancer IPs only when the event has some. A pre-2015-03 list of URLs gives way
        # to the map.
        urls = dict(cluster.access_urls) if isinstance(cluster.access_urls, dict) else {}
        if event.access_urls is None:
            urls.pop(event.instance_id, None)
        else:
            urls[event.instance_id] = event.access_urls
        ips = event.load_balancer_ips or cluster.load_balancer_ips
        if urls != (cluster.access_urls or {}) or ips != cluster.load_balancer_ips:
            cluster.access_urls = urls
            cluster.load_balancer_ips = ips
            changes.append(ClusterUpdated(event.service_name, event.cluster_id))
        self._move_instance(event, instance, ClusterStatus.ACTIVE.value, changes)
        return changes

    def _cluster_instance_moved(self, event: Any, status: str) -> _Changes:
        # ClusterInstanceInactivate, -Terminating and ClusterReset: a status change only. (Java throws on a
        # missing instance for two of them; here all three drop the event.)
        found = self._find_instance(event)
        changes: _Changes = []
        if found is not None:
            self._move_instance(event, found[1], status, changes)
        return changes

    def _cluster_instance_terminated(self, event: events.ClusterInstanceTerminatedEvent) -> _Changes:
        found = self._find_instance(event)
        if found is None:
            return []
        cluster, instance = found
        # Java moves the instance to Terminated and then removes it; only the removal is announced, which
        # is also all a snapshot can tell. The access URLs of the instance stay, as in Java.
        self._move_instance(event, instance, ClusterStatus.TERMINATED.value, [])
        del cluster.instance_id_to_instance_context_map[event.instance_id]
        return [ClusterInstanceRemoved(event.service_name, event.cluster_id, event.instance_id)]

    @staticmethod
    def _move_instance(event: Any, instance: ClusterInstance, status: str, changes: _Changes) -> None:
        manager = instance.life_cycle_state_manager
        if manager is None:
            manager = instance.life_cycle_state_manager = ClusterStatusStateManager(
                state_stack=[], identifier=f"{event.cluster_id}_{event.instance_id}")
        if manager.state_stack is None:
            manager.state_stack = []
        old = manager.state_stack[-1] if manager.state_stack else None
        if old != status:
            manager.state_stack.append(status)
            changes.append(ClusterInstanceStatusChanged(
                event.service_name, event.cluster_id, event.instance_id, old, status))

    # --- Members -----------------------------------------------------------------------------------------

    def _member_created(self, event: events.MemberCreatedEvent) -> _Changes:
        cluster = self._find_cluster(event, event.service_name, event.cluster_id)
        member_id = event.member_id
        if cluster is None or member_id is None:
            return []
        if cluster.member_map is None:
            cluster.member_map = {}
        if member_id in cluster.member_map:
            return []
        member = Member(
            service_name=event.service_name, cluster_id=event.cluster_id, member_id=member_id,
            cluster_instance_id=event.cluster_instance_id, network_partition_id=event.network_partition_id,
            partition_id=event.partition_id, init_time=event.init_time, port_map={},
            properties=event.properties, load_balancing_ip_type=event.load_balancing_ip_type,
            member_state_manager=MemberStatusStateManager(state_stack=[MemberStatus.CREATED.value],
                                                          identifier=member_id),
        )
        cluster.member_map[member_id] = member
        changes: _Changes = []
        self._track_member(event.service_name, event.cluster_id, member_id, member, changes)
        return changes

    def _member_moved(self, event: Any, status: str,
                      take_fields: Callable[[Member, Any], None] | None = None) -> _Changes:
        # Every member status event: push the status unless it is already current (then Java changes
        # nothing, not even the fields), and take the event's fields along with it.
        member = self._find_member(event)
        if member is None:
            return []
        manager = member.member_state_manager
        if manager is None:
            manager = member.member_state_manager = MemberStatusStateManager(state_stack=[],
                                                                             identifier=event.member_id)
        if manager.state_stack is None:
            manager.state_stack = []
        old = manager.state_stack[-1] if manager.state_stack else None
        if old == status:
            return []
        manager.state_stack.append(status)
        if take_fields is not None:
            take_fields(member, event)
        return [MemberStatusChanged(event.service_name, event.cluster_id, event.member_id, old, status)]

    def _member_activated(self, event: events.MemberActivatedEvent) -> _Changes:
        if not event.default_private_ip or not event.port_map:
            # Java throws here, losing the event; the next complete topology brings the member's state.
            _log.warning("MemberActivatedEvent for %r without a private IP or ports dropped", event.member_id)
            return []
        return self._member_moved(event, MemberStatus.ACTIVE.value, _take_activated_fields)

    def _member_terminated(self, event: events.MemberTerminatedEvent) -> _Changes:
        # The member is removed, never moved to Terminated (as in Java).
        cluster = self._find_cluster(event, event.service_name, event.cluster_id)
        if cluster is None:
            return []
        member = cluster.member_map.pop(event.member_id, None) if cluster.member_map else None
        if member is None:
            _log.debug("MemberTerminatedEvent: no member %r in cluster %r", event.member_id, event.cluster_id)
            return []
        changes: _Changes = []
        self._untrack_member(event.service_name, event.cluster_id, event.member_id, member, changes)
        return changes


    # --- The handler of each event; HANDLED is their classes --------------------------------------------

    _HANDLERS: ClassVar[Mapping[type[events.Event], Callable[..., _Changes | None]]] = MappingProxyType({
        events.CompleteTopologyEvent: _complete_topology,
        events.ServiceCreatedEvent: _service_created,
        events.ServiceRemovedEvent: _service_removed,
        events.ApplicationClustersCreatedEvent: _application_clusters_created,
        events.ApplicationClustersRemovedEvent: _application_clusters_removed,
        events.ClusterCreatedEvent: _cluster_created,
        events.ClusterRemovedEvent: _cluster_removed,
        events.ClusterInstanceCreatedEvent: _cluster_instance_created,
        events.ClusterInstanceActivatedEvent: _cluster_instance_activated,
        events.ClusterInstanceInactivateEvent: partial(_cluster_instance_moved,
                                                       status=ClusterStatus.INACTIVE.value),
        events.ClusterInstanceTerminatingEvent: partial(_cluster_instance_moved,
                                                        status=ClusterStatus.TERMINATING.value),
        events.ClusterResetEvent: partial(_cluster_instance_moved, status=ClusterStatus.CREATED.value),
        events.ClusterInstanceTerminatedEvent: _cluster_instance_terminated,
        events.MemberCreatedEvent: _member_created,
        events.MemberInitializedEvent: partial(_member_moved, status=MemberStatus.INITIALIZED.value,
                                               take_fields=_take_initialized_fields),
        events.MemberStartedEvent: partial(_member_moved, status=MemberStatus.STARTING.value),
        events.MemberActivatedEvent: _member_activated,
        events.MemberMaintenanceModeEvent: partial(_member_moved, status=MemberStatus.IN_MAINTENANCE.value),
        events.MemberReadyToShutdownEvent: partial(_member_moved,
                                                   status=MemberStatus.READY_TO_SHUT_DOWN.value),
        events.MemberSuspendedEvent: partial(_member_moved, status=MemberStatus.SUSPENDED.value),
        events.MemberTerminatedEvent: _member_terminated,
    })
    HANDLED = frozenset(_HANDLERS)
