"""Reconciling a complete topology into the model: only the differences change, and are announced."""

from __future__ import annotations

from typing import Any

from pca_core.stratos.events import Cluster, Service
from pca_core.stratos.topology.changes import (
    EMPTY,
    Changes,
    ClusterInstanceRemoved,
    ClusterInstanceStatusChanged,
    ClusterUpdated,
    MemberStatusChanged,
    MemberUpdated,
    ServiceUpdated,
    status_of,
)
from pca_core.stratos.topology.index import TopologyIndex

# The fields that hold an entity's children or history, which a reconciliation compares on its own.
_SERVICE_CHILDREN = frozenset({"cluster_id_cluster_map"})
_CLUSTER_CHILDREN = frozenset({"member_map", "instance_id_to_instance_context_map"})
_INSTANCE_HISTORY = frozenset({"life_cycle_state_manager"})
_MEMBER_HISTORY = frozenset({"member_state_manager"})


def assign(old: Any, new: Any, skip: frozenset[str]) -> bool:
    """Copies every field of ``new`` but those in ``skip`` into ``old``; tells whether any differed."""
    changed = False
    for name in old.__struct_fields__:
        if name not in skip:
            value = getattr(new, name)
            if getattr(old, name) != value:
                setattr(old, name, value)
                changed = True
    return changed


def reconcile(index: TopologyIndex, snapshot: dict[str, Service]) -> Changes:
    """Brings the tree to ``snapshot``; returns the changes, as the equivalent incremental events give."""
    # A dict-keyed diff, level by level; a subtree equal to the model's (one C-level comparison of the
    # Structs) is skipped whole, and a new subtree is adopted as decoded.
    changes: Changes = []
    for name in [name for name in index.services if name not in snapshot]:
        index.untrack_service(name, index.services.pop(name), changes)
    for name, new in snapshot.items():
        old = index.services.get(name)
        if old is None:
            index.services[name] = new
            index.track_service(name, new, changes)
        elif old != new:
            _reconcile_service(index, name, old, new, changes)
    return changes


def _reconcile_service(index: TopologyIndex, name: str, old: Service, new: Service,
                       changes: Changes) -> None:
    if assign(old, new, _SERVICE_CHILDREN):
        changes.append(ServiceUpdated(name))
    if old.cluster_id_cluster_map is None:
        old.cluster_id_cluster_map = {}
    clusters = old.cluster_id_cluster_map
    snapshot = new.cluster_id_cluster_map or EMPTY
    for cluster_id in [cluster_id for cluster_id in clusters if cluster_id not in snapshot]:
        index.untrack_cluster(name, cluster_id, clusters.pop(cluster_id), changes)
    for cluster_id, cluster in snapshot.items():
        current = clusters.get(cluster_id)
        if current is None:
            clusters[cluster_id] = cluster
            index.track_cluster(name, cluster_id, cluster, changes)
        elif current != cluster:
            _reconcile_cluster(index, name, cluster_id, current, cluster, changes)


def _reconcile_cluster(index: TopologyIndex, service: str, cluster_id: str, old: Cluster,
                       new: Cluster, changes: Changes) -> None:
    updated = assign(old, new, _CLUSTER_CHILDREN)
    instance_changes: Changes = []
    if old.instance_id_to_instance_context_map is None:
        old.instance_id_to_instance_context_map = {}
    instances = old.instance_id_to_instance_context_map
    snapshot_instances = new.instance_id_to_instance_context_map or EMPTY
    for instance_id in [i for i in instances if i not in snapshot_instances]:
        del instances[instance_id]
        instance_changes.append(ClusterInstanceRemoved(service, cluster_id, instance_id))
    for instance_id, instance in snapshot_instances.items():
        current = instances.get(instance_id)
        if current is None:
            instances[instance_id] = instance
            index.track_instance(service, cluster_id, instance_id, instance, instance_changes)
        elif current != instance:
            before = status_of(current.life_cycle_state_manager)
            after = status_of(instance.life_cycle_state_manager)
            updated |= assign(current, instance, _INSTANCE_HISTORY)
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
    snapshot_members = new.member_map or EMPTY
    for member_id in [m for m in members if m not in snapshot_members]:
        index.untrack_member(service, cluster_id, member_id, members.pop(member_id), changes)
    for member_id, member in snapshot_members.items():
        current_member = members.get(member_id)
        if current_member is None:
            members[member_id] = member
            index.track_member(service, cluster_id, member_id, member, changes)
        elif current_member != member:
            before = status_of(current_member.member_state_manager)
            after = status_of(member.member_state_manager)
            details = assign(current_member, member, _MEMBER_HISTORY)
            current_member.member_state_manager = member.member_state_manager
            if before != after:
                changes.append(MemberStatusChanged(service, cluster_id, member_id, before, after))
            elif details:
                changes.append(MemberUpdated(service, cluster_id, member_id))
