"""The topology model: services, clusters, cluster instances and members, kept from the topology events.

:class:`TopologyModel` (in :mod:`.model`) is what the agent reads; :mod:`.changes` holds what it
announces, :mod:`.processors` how each incremental event is applied, :mod:`.reconcile` how a complete
topology is merged, and :mod:`.index` the tree and its indexes.
"""

from pca_core.stratos.topology.changes import (
    ClusterAdded,
    ClusterInstanceAdded,
    ClusterInstanceRemoved,
    ClusterInstanceStatusChanged,
    ClusterRemoved,
    ClusterUpdated,
    MemberAdded,
    MemberRemoved,
    MemberStatusChanged,
    MemberUpdated,
    ServiceAdded,
    ServiceRemoved,
    ServiceUpdated,
    TopologyChange,
)
from pca_core.stratos.topology.model import TopologyModel

__all__ = [
    "ClusterAdded",
    "ClusterInstanceAdded",
    "ClusterInstanceRemoved",
    "ClusterInstanceStatusChanged",
    "ClusterRemoved",
    "ClusterUpdated",
    "MemberAdded",
    "MemberRemoved",
    "MemberStatusChanged",
    "MemberUpdated",
    "ServiceAdded",
    "ServiceRemoved",
    "ServiceUpdated",
    "TopologyChange",
    "TopologyModel",
]
