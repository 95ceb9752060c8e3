"""The incremental topology events, applied as the Java processors apply them (processors.md).

Each processor takes the model's index and one decoded event, changes the tree in place and returns the
changes it made; :data:`HANDLERS` maps each event class to its processor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from pca_core.stratos import events
from pca_core.stratos.events import (
    Cluster,
    ClusterInstance,
    ClusterStatus,
    ClusterStatusStateManager,
    Member,
    MemberStatus,
    MemberStatusStateManager,
    Service,
)
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.topology.changes import (
    EMPTY,
    Changes,
    ClusterInstanceRemoved,
    ClusterInstanceStatusChanged,
    ClusterUpdated,
    MemberStatusChanged,
    ServiceAdded,
    status_of,
)
from pca_core.stratos.topology.index import TopologyIndex

_log = logging.getLogger(__name__)


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
    member.port_map.update(event.port_map or EMPTY)
    member.default_private_ip = event.default_private_ip
    member.member_private_ips = event.member_private_ips


# --- Services and clusters ---------------------------------------------------------------------------

def _service_created(index: TopologyIndex, event: events.ServiceCreatedEvent) -> Changes:
    name = event.service_name
    if name is None or name in index.services:
        return []
    index.services[name] = Service(service_name=name, service_type=event.service_type,
                                   cluster_id_cluster_map={}, port_map=dict(event.port_map or EMPTY),
                                   properties=event.properties)
    return [ServiceAdded(name)]


def _service_removed(index: TopologyIndex, event: events.ServiceRemovedEvent) -> Changes:
    service = index.services.pop(event.service_name, None)
    if service is None:
        _log.debug("ServiceRemovedEvent: no service %s", excerpt(event.service_name))
        return []
    changes: Changes = []
    index.untrack_service(event.service_name, service, changes)
    return changes


def _add_cluster(index: TopologyIndex,
                 event: events.Event, cluster: Cluster | None, changes: Changes) -> None:
    if cluster is None or cluster.cluster_id is None:
        return
    service = index.services.get(cluster.service_name)
    if service is None:
        _log.debug("%s: cluster %s dropped: no service %s", type(event).__name__, excerpt(cluster.cluster_id),
                   excerpt(cluster.service_name))
        return
    if service.cluster_id_cluster_map is None:
        service.cluster_id_cluster_map = {}
    if cluster.cluster_id not in service.cluster_id_cluster_map:
        service.cluster_id_cluster_map[cluster.cluster_id] = cluster
        index.track_cluster(cluster.service_name, cluster.cluster_id, cluster, changes)


def _remove_cluster(index: TopologyIndex,
                    event: events.Event, service_name: str | None, cluster_id: str | None,
                    changes: Changes) -> None:
    service = index.services.get(service_name)
    clusters = service.cluster_id_cluster_map if service is not None else None
    cluster = clusters.pop(cluster_id, None) if clusters else None
    if cluster is None:
        _log.debug("%s: no cluster %s in service %s", type(event).__name__, excerpt(cluster_id),
                   excerpt(service_name))
        return
    index.untrack_cluster(service_name, cluster_id, cluster, changes)


def _cluster_created(index: TopologyIndex, event: events.ClusterCreatedEvent) -> Changes:
    changes: Changes = []
    _add_cluster(index, event, event.cluster, changes)
    return changes


def _application_clusters_created(index: TopologyIndex,
                                  event: events.ApplicationClustersCreatedEvent) -> Changes:
    # Java stops at the first cluster whose service is missing (processors.md §13 #19); here only that
    # cluster is skipped.
    changes: Changes = []
    for cluster in event.cluster_list or ():
        _add_cluster(index, event, cluster, changes)
    return changes


def _cluster_removed(index: TopologyIndex, event: events.ClusterRemovedEvent) -> Changes:
    changes: Changes = []
    _remove_cluster(index, event, event.service_name, event.cluster_id, changes)
    return changes


def _application_clusters_removed(index: TopologyIndex,
                                  event: events.ApplicationClustersRemovedEvent) -> Changes:
    changes: Changes = []
    for data in event.cluster_data or ():
        _remove_cluster(index, event, data.service_type, data.cluster_id, changes)
    return changes


# --- Cluster instances -------------------------------------------------------------------------------

def _cluster_instance_created(index: TopologyIndex, event: events.ClusterInstanceCreatedEvent) -> Changes:
    cluster = index.find_cluster(event, event.service_name, event.cluster_id)
    instance = event.cluster_instance
    if cluster is None or instance is None or instance.instance_id is None:
        return []
    if cluster.instance_id_to_instance_context_map is None:
        cluster.instance_id_to_instance_context_map = {}
    if instance.instance_id in cluster.instance_id_to_instance_context_map:
        return []
    cluster.instance_id_to_instance_context_map[instance.instance_id] = instance
    changes: Changes = []
    index.track_instance(event.service_name, event.cluster_id, instance.instance_id, instance, changes)
    return changes


def _cluster_instance_activated(index: TopologyIndex, event: events.ClusterInstanceActivatedEvent) -> Changes:
    found = index.find_instance(event)
    if found is None:
        return []
    cluster, instance = found
    if status_of(instance.life_cycle_state_manager) == ClusterStatus.ACTIVE:
        return []  # Java skips everything, the URLs and IPs included
    changes: Changes = []
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
    _move_instance(event, instance, ClusterStatus.ACTIVE.value, changes)
    return changes


def _cluster_instance_moved(index: TopologyIndex, event: Any, status: str) -> Changes:
    # ClusterInstanceInactivate, -Terminating and ClusterReset: a status change only. (Java throws on a
    # missing instance for two of them; here all three drop the event.)
    found = index.find_instance(event)
    changes: Changes = []
    if found is not None:
        _move_instance(event, found[1], status, changes)
    return changes


def _cluster_instance_terminated(index: TopologyIndex,
                                 event: events.ClusterInstanceTerminatedEvent) -> Changes:
    found = index.find_instance(event)
    if found is None:
        return []
    cluster, instance = found
    # Java moves the instance to Terminated and then removes it; only the removal is announced, which
    # is also all a snapshot can tell. The access URLs of the instance stay, as in Java.
    _move_instance(event, instance, ClusterStatus.TERMINATED.value, [])
    del cluster.instance_id_to_instance_context_map[event.instance_id]
    return [ClusterInstanceRemoved(event.service_name, event.cluster_id, event.instance_id)]


def _move_instance(event: Any, instance: ClusterInstance, status: str, changes: Changes) -> None:
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

def _member_created(index: TopologyIndex, event: events.MemberCreatedEvent) -> Changes:
    cluster = index.find_cluster(event, event.service_name, event.cluster_id)
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
    changes: Changes = []
    index.track_member(event.service_name, event.cluster_id, member_id, member, changes)
    return changes


def _member_moved(index: TopologyIndex, event: Any, status: str,
                  take_fields: Callable[[Member, Any], None] | None = None) -> Changes:
    # Every member status event: push the status unless it is already current (then Java changes
    # nothing, not even the fields), and take the event's fields along with it.
    member = index.find_member(event)
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


def _member_activated(index: TopologyIndex, event: events.MemberActivatedEvent) -> Changes:
    if not event.default_private_ip or not event.port_map:
        # Java throws here, losing the event; the next complete topology brings the member's state.
        _log.warning("MemberActivatedEvent for %s without a private IP or ports dropped",
                     excerpt(event.member_id))
        return []
    return _member_moved(index, event, MemberStatus.ACTIVE.value, _take_activated_fields)


def _member_terminated(index: TopologyIndex, event: events.MemberTerminatedEvent) -> Changes:
    # The member is removed, never moved to Terminated (as in Java).
    cluster = index.find_cluster(event, event.service_name, event.cluster_id)
    if cluster is None:
        return []
    member = cluster.member_map.pop(event.member_id, None) if cluster.member_map else None
    if member is None:
        _log.debug("MemberTerminatedEvent: no member %s in cluster %s", excerpt(event.member_id),
                   excerpt(event.cluster_id))
        return []
    changes: Changes = []
    index.untrack_member(event.service_name, event.cluster_id, event.member_id, member, changes)
    return changes


HANDLERS: Mapping[type[events.Event], Callable[..., Changes]] = MappingProxyType({
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
