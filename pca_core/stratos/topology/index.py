"""The topology's objects and the indexes over them, kept in step as subtrees enter and leave."""

from __future__ import annotations

import logging
from typing import Any

from pca_core.stratos import events
from pca_core.stratos.events import Cluster, ClusterInstance, Member, Service, Topology
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.topology.changes import (
    EMPTY,
    Changes,
    ClusterAdded,
    ClusterInstanceAdded,
    ClusterInstanceRemoved,
    ClusterInstanceStatusChanged,
    ClusterRemoved,
    MemberAdded,
    MemberRemoved,
    MemberStatusChanged,
    ServiceAdded,
    ServiceRemoved,
    status_of,
)

_log = logging.getLogger(__name__)


class TopologyIndex:
    """The services (the tree), with every cluster and member also indexed by id.

    ``track_*`` adds a subtree that entered the tree to the indexes and appends its ``Added`` changes,
    parents first; ``untrack_*`` does the reverse, children's ``Removed`` first. The ``find_*`` lookups
    drop (with a debug log) an event naming what the tree does not hold, as Java's gates do.

    Attributes:
        services: every service by name: the tree.
        clusters: every cluster of every service, by cluster id.
        members: every member of every cluster, by member id.
        topology: the same objects as a wire ``Topology``.
    """

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.clusters: dict[str, Cluster] = {}
        self.members: dict[str, Member] = {}
        self.topology = Topology(service_map=self.services, cluster_map=self.clusters)

    # --- Subtrees entering and leaving the model: indexes and Added/Removed changes ----------------------

    def track_service(self, name: str, service: Service, changes: Changes) -> None:
        """Adds a service that entered the tree, and its clusters, to the indexes."""
        changes.append(ServiceAdded(name))
        for cluster_id, cluster in (service.cluster_id_cluster_map or EMPTY).items():
            self.track_cluster(name, cluster_id, cluster, changes)

    def untrack_service(self, name: str, service: Service, changes: Changes) -> None:
        """Drops a service that left the tree, and its clusters, from the indexes."""
        for cluster_id, cluster in (service.cluster_id_cluster_map or EMPTY).items():
            self.untrack_cluster(name, cluster_id, cluster, changes)
        changes.append(ServiceRemoved(name))

    def track_cluster(self, service: str, cluster_id: str, cluster: Cluster, changes: Changes) -> None:
        """Adds a cluster that entered the tree, its instances and members, to the indexes."""
        self.clusters[cluster_id] = cluster
        changes.append(ClusterAdded(service, cluster_id))
        for instance_id, instance in (cluster.instance_id_to_instance_context_map or EMPTY).items():
            self.track_instance(service, cluster_id, instance_id, instance, changes)
        for member_id, member in (cluster.member_map or EMPTY).items():
            self.track_member(service, cluster_id, member_id, member, changes)

    def untrack_cluster(self, service: str, cluster_id: str, cluster: Cluster, changes: Changes) -> None:
        """Drops a cluster that left the tree, and its members, from the indexes."""
        for member_id, member in (cluster.member_map or EMPTY).items():
            self.untrack_member(service, cluster_id, member_id, member, changes)
        for instance_id in cluster.instance_id_to_instance_context_map or EMPTY:
            changes.append(ClusterInstanceRemoved(service, cluster_id, instance_id))
        if self.clusters.get(cluster_id) is cluster:
            del self.clusters[cluster_id]
        changes.append(ClusterRemoved(service, cluster_id))

    @staticmethod
    def track_instance(service: str, cluster_id: str, instance_id: str, instance: ClusterInstance,
                       changes: Changes) -> None:
        """Announces a cluster instance that entered the tree, with its status."""
        changes.append(ClusterInstanceAdded(service, cluster_id, instance_id))
        status = status_of(instance.life_cycle_state_manager)
        if status is not None:
            changes.append(ClusterInstanceStatusChanged(service, cluster_id, instance_id, None, status))

    def track_member(self, service: str, cluster_id: str, member_id: str, member: Member,
                     changes: Changes) -> None:
        """Adds a member that entered the tree to the index, with its status."""
        self.members[member_id] = member
        changes.append(MemberAdded(service, cluster_id, member_id))
        status = status_of(member.member_state_manager)
        if status is not None:
            changes.append(MemberStatusChanged(service, cluster_id, member_id, None, status))

    def untrack_member(self, service: str, cluster_id: str, member_id: str, member: Member,
                       changes: Changes) -> None:
        """Drops a member that left the tree from the index."""
        # The identity check keeps the index right should a malformed topology repeat a member id.
        if self.members.get(member_id) is member:
            del self.members[member_id]
        changes.append(MemberRemoved(service, cluster_id, member_id))

    # --- Lookups that drop an event naming what the model does not hold ----------------------------------

    def find_cluster(self, event: events.Event, service_name: str | None,
                     cluster_id: str | None) -> Cluster | None:
        """The cluster an event names, or None (the event is dropped)."""
        service = self.services.get(service_name)  # type: ignore[arg-type]
        if service is None:
            _log.debug("%s dropped: no service %s", type(event).__name__, excerpt(service_name))
            return None
        cluster = service.cluster_id_cluster_map.get(cluster_id) if service.cluster_id_cluster_map else None
        if cluster is None:
            _log.debug("%s dropped: no cluster %s in service %s", type(event).__name__, excerpt(cluster_id),
                       excerpt(service_name))
        return cluster

    def find_instance(self, event: Any) -> tuple[Cluster, ClusterInstance] | None:
        """The cluster and cluster instance an event names, or None (the event is dropped)."""
        # Java's lookup with a null instance id returns an arbitrary instance (processors.md §13 #8); here a
        # missing id matches nothing.
        cluster = self.find_cluster(event, event.service_name, event.cluster_id)
        if cluster is None:
            return None
        instances = cluster.instance_id_to_instance_context_map
        instance = instances.get(event.instance_id) if instances else None
        if instance is None:
            _log.debug("%s dropped: no instance %s in cluster %s", type(event).__name__,
                       excerpt(event.instance_id), excerpt(event.cluster_id))
            return None
        return cluster, instance

    def find_member(self, event: Any) -> Member | None:
        """The member an event names, or None (the event is dropped)."""
        cluster = self.find_cluster(event, event.service_name, event.cluster_id)
        if cluster is None:
            return None
        member = cluster.member_map.get(event.member_id) if cluster.member_map else None
        if member is None:
            _log.debug("%s dropped: no member %s in cluster %s", type(event).__name__,
                       excerpt(event.member_id), excerpt(event.cluster_id))
        return member
