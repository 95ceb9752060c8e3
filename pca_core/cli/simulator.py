"""A simulated Stratos control plane for one member: what ``pca simulate`` and ``pca demo`` run.

It answers the agent's requests and status events the way Cloud Controller and Stratos Manager do:
a complete topology holding the member (status Created) and then MemberInitializedEvent, the tenant
and signup lists, MemberStarted/Activated/MaintenanceMode/ReadyToShutdown events as the agent reports
its status, an ArtifactUpdatedEvent for a repository when one is configured, and cleanup on request.
Operators use it to try their extensions without a Stratos installation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pca_core.api.errors import TransportError
from pca_core.api.transport import Message, Transport
from pca_core.runtime.dispatcher import Dispatcher
from pca_core.stratos import events
from pca_core.stratos.payload import Identity

_log = logging.getLogger(__name__)


class Simulator:
    """Plays the control plane for ``identity`` over ``transport`` (connected by the caller).

    Args:
        transport: a connected transport on the agent's broker.
        identity: the member to simulate (from the agent's payload).
        repo_url: when set, an ArtifactUpdatedEvent for it follows the member's InstanceStartedEvent.
        cleanup_after_activation: send InstanceCleanupMemberEvent once the member is active.
        say: where to print the timeline.
        finished: set when the member reports ready to shut down (a new event when not given).
    """

    def __init__(self, transport: Transport, identity: Identity, *, repo_url: str | None = None,
                 cleanup_after_activation: bool = False, say: Callable[[str], None] = print,
                 finished: threading.Event | None = None) -> None:
        self.transport = transport
        self.identity = identity
        self.repo_url = repo_url
        self.cleanup_after_activation = cleanup_after_activation
        self.say = say
        self.received: list[str] = []
        self.ready_to_shutdown = finished or threading.Event()
        # Replies are published from a thread of our own, never from the transport's network thread.
        self._dispatcher = Dispatcher(1000)

    def start(self) -> None:
        """Subscribes to the agent's requests and status events."""
        self._dispatcher.start()
        for pattern in ("initializer/#", "instance/status/#"):
            self.transport.subscribe(pattern, self._dispatcher.wrap(self._on_message))

    def close(self, timeout: float = 5.0) -> None:
        """Stops handling messages."""
        self._dispatcher.stop(timeout)

    def cleanup(self) -> None:
        """Asks the member to clean up (InstanceCleanupMemberEvent)."""
        self._send(events.InstanceCleanupMemberEvent(member_id=self.identity.member_id))

    def _ids(self) -> dict[str, str | None]:
        me = self.identity
        return {"service_name": me.service_name, "cluster_id": me.cluster_id, "member_id": me.member_id,
                "cluster_instance_id": me.cluster_instance_id,
                "network_partition_id": me.network_partition_id, "partition_id": me.partition_id}

    def _send(self, event: events.Event) -> None:
        self.say(f"control  -> {event.TOPIC}")
        try:
            self.transport.publish(event.TOPIC, events.encode(event))
        except TransportError as exc:  # the broker went away: say so, as the real control plane would log it
            self.say(f"control  !! {event.TOPIC} not sent: {exc}")

    def _on_message(self, message: Message) -> None:
        name = message.topic.rpartition("/")[2]
        self.received.append(name)
        self.say(f"control  <- {message.topic}")
        reply = {
            "CompleteTopologyRequestEvent": self._complete_topology_request,
            "CompleteTenantRequestEvent": self._complete_tenant_request,
            "CompleteApplicationSignUpsRequestEvent": self._complete_application_sign_ups_request,
            "InstanceStartedEvent": self._instance_started,
            "InstanceActivatedEvent": self._instance_activated,
            "InstanceMaintenanceModeEvent": self._instance_maintenance_mode,
            "InstanceReadyToShutdownEvent": self._instance_ready_to_shutdown,
        }.get(name)
        if reply is not None:
            reply()

    def _complete_topology_request(self) -> None:
        me = self.identity
        member = events.Member(**self._ids(), init_time=0, port_map={},
                               member_state_manager=events.MemberStatusStateManager(
                                   state_stack=[events.MemberStatus.CREATED], identifier=me.member_id))
        cluster = events.Cluster(service_name=me.service_name, cluster_id=me.cluster_id, tenant_range="*",
                                 is_lb_cluster=False, is_kubernetes_cluster=False, app_id=me.application_id,
                                 member_map={me.member_id or "": member})
        service = events.Service(service_name=me.service_name, service_type="SingleTenant",
                                 cluster_id_cluster_map={me.cluster_id: cluster})
        self._send(events.CompleteTopologyEvent(topology=events.Topology(
            cluster_map={}, service_map={me.service_name: service})))
        self._send(events.MemberInitializedEvent(**self._ids(), instance_id=me.instance_id,
                                                 default_private_ip="127.0.0.1",
                                                 member_private_ips=["127.0.0.1"]))

    def _complete_tenant_request(self) -> None:
        self._send(events.CompleteTenantEvent(tenants=[
            events.Tenant(tenant_id=-1234, tenant_domain="carbon.super")]))

    def _complete_application_sign_ups_request(self) -> None:
        self._send(events.CompleteApplicationSignUpsEvent(application_sign_ups=[]))

    def _instance_started(self) -> None:
        self._send(events.MemberStartedEvent(**self._ids(), status=events.MemberStatus.STARTING))
        if self.repo_url:
            self._send(events.ArtifactUpdatedEvent(cluster_id=self.identity.cluster_id, status="Updated",
                                                   repo_url=self.repo_url, tenant_id=self.identity.tenant_id,
                                                   commit_enabled=False))

    def _instance_activated(self) -> None:
        ports = {str(p): events.Port(protocol="http", value=p, proxy=p) for p in self.identity.ports}
        self._send(events.MemberActivatedEvent(**self._ids(), port_map=ports, default_private_ip="127.0.0.1",
                                               member_private_ips=["127.0.0.1"],
                                               application_id=self.identity.application_id))
        if self.cleanup_after_activation:
            self.cleanup()

    def _instance_maintenance_mode(self) -> None:
        self._send(events.MemberMaintenanceModeEvent(**self._ids(),
                                                     status=events.MemberStatus.IN_MAINTENANCE))

    def _instance_ready_to_shutdown(self) -> None:
        self._send(events.MemberReadyToShutdownEvent(**self._ids(),
                                                     status=events.MemberStatus.READY_TO_SHUT_DOWN))
        self.ready_to_shutdown.set()
