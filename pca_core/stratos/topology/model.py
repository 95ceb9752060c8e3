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
from collections.abc import Mapping
from types import MappingProxyType

from pca_core.stratos import events
from pca_core.stratos.events import Cluster, CompleteTopologyEvent, Member, Service, Topology
from pca_core.stratos.snapshot import SnapshotModel
from pca_core.stratos.topology.changes import Changes, TopologyChange, status_of
from pca_core.stratos.topology.index import TopologyIndex
from pca_core.stratos.topology.processors import HANDLERS
from pca_core.stratos.topology.reconcile import reconcile

_log = logging.getLogger(__name__)


class TopologyModel(SnapshotModel[TopologyChange]):
    """The agent's view of the Stratos topology, kept from the ``topology/#`` events.

    Each update returns the changes it made and then tells them to the observers (see
    :class:`~pca_core.stratos.observe.Observable`), in the same order: a parent's ``Added`` before its
    children's, children's ``Removed`` before their parent's. An update that changes nothing announces
    nothing.
    """

    COMPLETE = CompleteTopologyEvent
    GATED = True  # Java's gate: nothing but a complete topology is applied before the first one
    HANDLED = frozenset({CompleteTopologyEvent, *HANDLERS})

    def __init__(self) -> None:
        super().__init__()
        self._index = TopologyIndex()
        self._services_view: Mapping[str, Service] = MappingProxyType(self._index.services)

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
        return self._index.topology

    def service(self, name: str) -> Service | None:
        """The service called ``name``, or None."""
        return self._index.services.get(name)

    def cluster(self, cluster_id: str) -> Cluster | None:
        """The cluster ``cluster_id`` of whichever service holds it, or None."""
        return self._index.clusters.get(cluster_id)

    def member(self, member_id: str) -> Member | None:
        """The member ``member_id`` of whichever cluster holds it, or None."""
        return self._index.members.get(member_id)

    def member_status(self, member_id: str) -> str | None:
        """The member's current status (a :class:`~pca_core.stratos.events.MemberStatus` value), or None."""
        member = self._index.members.get(member_id)
        return None if member is None else status_of(member.member_state_manager)

    # --- Updating ----------------------------------------------------------------------------------------

    def _apply_event(self, event: events.Event) -> Changes | None:
        if type(event) is CompleteTopologyEvent:
            return self._complete_topology(event)
        return HANDLERS[type(event)](self._index, event)

    def _complete_topology(self, event: CompleteTopologyEvent) -> Changes | None:
        topology = event.topology
        if topology is None or topology.service_map is None:
            _log.warning("CompleteTopologyEvent without topology.serviceMap ignored")
            return None  # says nothing: the model stays uninitialized if it was
        changes = reconcile(self._index, topology.service_map)
        if not self.initialized:  # this snapshot is the first: the base class sets the flag on return
            index = self._index
            _log.info("topology initialized: %d services, %d clusters, %d members",
                      len(index.services), len(index.clusters), len(index.members))
        return changes
