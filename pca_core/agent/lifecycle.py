"""The agent's lifecycle: from start to active, maintenance and cleanup, as an explicit state machine.

The order is the original agent's (``original-agent.md`` §1.2): subscribe to the topology, run the LVS
extension, request the complete topology, wait for it and for this member to be initialized, subscribe to
the rest, request tenants, run the InstanceStarted extension and publish InstanceStartedEvent, run
StartServers, then activate: once the configured ports accept connections, directly when there is no
``REPO_URL``, else after the first artifact checkout.

Every step runs on one serial lane, a thread of its own, so the lifecycle is never two things at once,
never blocks the dispatcher, and a long extension script never holds a worker of the core scheduler.
Inputs (model changes, notifier events, port checks, control commands) only post work to the lane.
Status events go through the durable outbox, each once per transition.

Fixed here, compared with the original (§10): initialization is re-checked on every topology change (a
missed MemberInitializedEvent is repaired by the next snapshot); a restart on an Active member publishes
nothing again, and one on an In_Maintenance member returns it to service; a port timeout keeps checking
and a later success still activates; member extensions run whenever the member exists; the complete
topology is requested again, every ``agent.topology_request_interval`` (jittered), until it arrives, so a
control plane started after the agent still answers; and a long wait says, in the log and in ``pca
status``, what it is waiting for.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pca_core.agent.artifacts import ArtifactManager, ArtifactUpdate
from pca_core.agent.commands import control_commands
from pca_core.agent.control import ControlServer
from pca_core.agent.extensions import STOP_GRACE, ExtensionRunner, extension_values
from pca_core.agent.lane import Lane
from pca_core.agent.metrics import http_service
from pca_core.agent.outbox import Outbox
from pca_core.agent.phase import Phase
from pca_core.agent.ports import PortWatcher
from pca_core.agent.telemetry import Telemetry
from pca_core.api.errors import ArtifactSyncError
from pca_core.api.event_handler import HandlerContext
from pca_core.api.secrets import without_password
from pca_core.api.transport import ConnectionState, Message
from pca_core.runtime.runtime import Runtime
from pca_core.runtime.scheduler import Task
from pca_core.stratos import events
from pca_core.stratos.events import MemberStatus
from pca_core.stratos.signups import DomainMappingChange, DomainMappingRemoved
from pca_core.stratos.status import status_event
from pca_core.stratos.topics import AGENT_SUBSCRIPTIONS
from pca_core.stratos.topology import MemberRemoved, MemberStatusChanged, TopologyChange

_log = logging.getLogger(__name__)

# The extension a member status change runs (the PCA's names), for members that already existed.
MEMBER_EXTENSIONS = {
    MemberStatus.INITIALIZED: "MemberInitializedEvent",
    MemberStatus.STARTING: "MemberStartedEvent",
    MemberStatus.ACTIVE: "MemberActivatedEvent",
    MemberStatus.SUSPENDED: "MemberSuspendedEvent",
}

REQUEST_JITTER = 0.2
"""Each wait before another topology request is ``agent.topology_request_interval`` times a factor drawn
between 1 - this and 1 + this, so that agents started together do not ask in step."""

WAIT_WARNING_EVERY = 300.0
"""Seconds between two WARNINGs about one long wait (the first comes at the first re-check); the checks
in between log at DEBUG, so that a short interval does not flood the log."""


class Agent:
    """The Stratos lifecycle of this instance, driven by the control plane's events.

    Args:
        runtime: the loaded runtime (plugins, dispatcher, scheduler, models); the agent sets its
            message handler and registers what it must close.
        stop: set to stop the agent (``maintenance on --stop`` sets it too).
    """

    def __init__(self, runtime: Runtime, stop: threading.Event) -> None:
        assert runtime.transport is not None, "load the runtime first"
        self.runtime = runtime
        self.config = runtime.config
        self.identity = self.config.identity
        self.state = runtime.state
        self.stop_event = stop
        self._lane = Lane()
        repo = runtime.artifact_repo
        self.artifacts = ArtifactManager(self.config, repo, runtime.scheduler, post=self._lane.post,
                                         on_update=self._on_artifact_update) if repo is not None else None
        self.phase = Phase.STARTING
        state_dir = Path(self.config.agent.state_dir)
        self.outbox = Outbox(state_dir / "outbox.sqlite", runtime.transport, runtime.scheduler,
                             publish_timeout=self.config.transport.publish_timeout)
        self.telemetry = Telemetry(self.config, self.identity, runtime.publishers, runtime.scheduler)
        address = self.config.http.address()
        self.control = ControlServer(state_dir / "control.sock", control_commands(self),
                                     http=http_service(self, address) if address is not None else None)
        context = HandlerContext(self.config.payload, logging.getLogger("pca.handler"), self.state.topology,
                                 self.state.tenants)
        extensions_dir = self.config.agent.extensions_dir
        self.extensions = ExtensionRunner(Path(extensions_dir) if extensions_dir else None,
                                          runtime.handlers, context)
        self._check_posted = False
        self._ports = PortWatcher(runtime.scheduler, self.config.agent.listen_address, self.identity.ports,
                                  self.config.agent.port_check_timeout,
                                  on_open=lambda: self.post("activate", self._activate))
        self._first_activation = True
        self._tenants_announced = False
        self._phase_since = time.time()
        self._topology_requests = 0  # sent in this wait for the complete topology
        self.reconnects = 0  # connections the transport lost and got back
        self._wait_check: Task | None = None
        self._last_wait_warning: float | None = None
        self._rng = random.Random()
        runtime.on_message = self.on_message

    # --- Starting and stopping ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Opens the outbox and the control channel, connects, and starts the lifecycle.

        Returns:
            False when a stop was requested before the broker could be reached.
        """
        self.outbox.open()
        self.runtime.on_stop(self.outbox.close)
        self._lane.start()
        self.runtime.on_drain(self._stop_lane)
        self.telemetry.sink.start()
        self.runtime.on_stop(self.telemetry.sink.close)
        self.control.start()
        self.runtime.on_stop(self._close)
        self.state.topology.observe(self._on_topology_change)
        self.state.domain_mappings.observe(self._on_domain_mapping_change)
        if not self.runtime.start(self.stop_event, patterns=("topology/#",)):
            return False
        assert self.runtime.transport is not None
        self.runtime.transport.add_state_listener(self._on_connection)
        self._lane.post("start", self._begin)
        return True

    def _stop_lane(self, left: float) -> bool:
        # The step in flight gets what is left of the deadline. A script it still runs then is killed
        # with its process group, and the step ends without waiting for it.
        self._lane.stop()
        if self._lane.join(left):
            return True
        self.extensions.close()
        if not self._lane.join(STOP_GRACE):
            _log.warning("stopping: lifecycle step %s abandoned", self._lane.current)
        return False

    def _close(self, _left: float) -> None:
        if self._wait_check is not None:
            self._wait_check.cancel()
        self.extensions.close()  # no script starts from now on
        self.control.close(1.0)
        if self.artifacts is not None:
            self.artifacts.close()
        self.telemetry.close_logs()

    def _set_phase(self, phase: Phase) -> None:
        if phase != self.phase:
            _log.info("lifecycle: %s -> %s", self.phase, phase)
            self._phase_since = time.time()
            self._last_wait_warning = None
            self.phase = phase

    @property
    def phase_since(self) -> float:
        """When the agent entered its current phase, in seconds since the epoch."""
        return self._phase_since

    def waiting_for(self) -> str | None:
        """What the lifecycle is waiting for, in words (``pca status``); None when it waits for nothing."""
        phase, member = self.phase, self.identity.member_id
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._phase_since))
        if phase is Phase.WAITING_FOR_TOPOLOGY:
            count = self._topology_requests
            return (f"the complete topology from the control plane (requested {count} "
                    f"time{'s' if count != 1 else ''} since {since})")
        if phase is Phase.WAITING_FOR_INITIALIZATION:
            status = self.state.topology.member_status(member or "")
            where = f"it is {status} in the topology" if status is not None else "not in the topology"
            return f"member {member} to be initialized: {where} (since {since})"
        if phase is Phase.WAITING_FOR_ARTIFACTS:
            return f"the first artifact update for cluster {self.identity.cluster_id} (since {since})"
        if phase is Phase.ACTIVATING:
            ports, host = ", ".join(map(str, self.identity.ports)), self.config.agent.listen_address
            return f"ports {ports} on {host} to accept connections (since {since})"
        return None

    # --- Inputs (dispatcher thread: they only post work) ---------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Applies a message to the models, then posts what the lifecycle must do about it."""
        if not self.state.handle(message):
            return
        if message.topic.startswith("instance/notifier/"):
            try:
                event = events.decode(message.topic, message.payload)
            except events.EventDecodeError as exc:
                self.state.skipped(exc)
                return
            if isinstance(event, events.ArtifactUpdatedEvent):
                self._lane.post("artifact update", lambda: self._on_artifact_updated(event))
            elif isinstance(event, events.InstanceCleanupMemberEvent):
                if event.member_id == self.identity.member_id:
                    self._lane.post("cleanup", self._cleanup)
            elif isinstance(event, events.InstanceCleanupClusterEvent) and (
                    event.cluster_id == self.identity.cluster_id
                    and event.cluster_instance_id == self.identity.cluster_instance_id):
                self._lane.post("cleanup", self._cleanup)
        elif message.topic.startswith("tenant/"):
            self._announce_tenants()
        elif message.topic == events.ApplicationSignUpRemovedEvent.TOPIC:
            try:
                removed = events.decode(message.topic, message.payload)
            except events.EventDecodeError as exc:
                self.state.skipped(exc)
                return
            assert isinstance(removed, events.ApplicationSignUpRemovedEvent)
            self._lane.post("signup removed", lambda: self._on_signup_removed(removed))

    def _on_topology_change(self, change: TopologyChange) -> None:
        if not self._check_posted and self._may_initialize(change):
            self._check_posted = True  # one check for a whole snapshot's worth of changes
            self._lane.post("initialization check", self._check_initialized)
        name = None
        if isinstance(change, MemberStatusChanged) and change.old is not None:
            name = MEMBER_EXTENSIONS.get(change.new)  # type: ignore[call-overload]
        elif isinstance(change, MemberRemoved):
            name = "MemberTerminatedEvent"
        if name is not None and self.extensions.wants(name):  # else no job for each member's event
            extra = {"EVENT_SERVICE_NAME": change.service, "EVENT_CLUSTER_ID": change.cluster_id,
                     "EVENT_MEMBER_ID": change.member_id}
            self._lane.post(name, lambda: self._extension(name, **extra), essential=False)

    def _may_initialize(self, change: TopologyChange) -> bool:
        """Whether ``change`` may end the wait for the topology or for this member's initialization.

        While the member is awaited, only a change of this member (or of the structure around it) can end
        the wait: the other members' events, the bulk of a big cluster's traffic, post no check.
        """
        phase = self.phase
        if phase is Phase.WAITING_FOR_TOPOLOGY:
            return True
        if phase is not Phase.WAITING_FOR_INITIALIZATION:
            return False
        member_id = getattr(change, "member_id", None)
        return member_id is None or member_id == self.identity.member_id

    def _announce_tenants(self) -> None:
        # The CompleteTenantEvent extension runs once, when the first tenant list arrived (as before);
        # checked per message, since a list holding only the super tenant changes nothing in the model.
        if self._tenants_announced or not self.state.tenants.initialized:
            return
        self._tenants_announced = True
        tenants = [{"tenantId": t.tenant_id, "tenantDomain": t.domain}
                   for t in self.state.tenants.tenants.values()]
        self._lane.post("tenants", lambda: self._extension("CompleteTenantEvent",
                                                           TENANT_LIST_JSON=json.dumps(tenants)))

    def _on_domain_mapping_change(self, change: DomainMappingChange) -> None:
        name = "DomainMappingRemovedEvent" if isinstance(change, DomainMappingRemoved) \
            else "DomainMappingAddedEvent"
        extra: dict[str, object] = {"SUBSCRIPTION_CLUSTER_ID": change.cluster_id,
                                    "SUBSCRIPTION_DOMAIN_NAME": change.domain_name}
        mapping = self.state.domain_mappings.mapping(change.cluster_id, change.domain_name)
        if mapping is not None:
            tenant = self.state.tenants.tenant(mapping.tenant_id) if mapping.tenant_id is not None else None
            extra.update(SUBSCRIPTION_APPLICATION_ID=mapping.application_id,
                         SUBSCRIPTION_SERVICE_NAME=mapping.service_name,
                         SUBSCRIPTION_TENANT_ID=mapping.tenant_id,
                         SUBSCRIPTION_TENANT_DOMAIN=tenant.domain if tenant is not None else None,
                         SUBSCRIPTION_CONTEXT_PATH=mapping.context_path)
        self._lane.post(name, lambda: self._extension(name, **extra), essential=False)

    def _on_connection(self, state: ConnectionState, _error: BaseException | None) -> None:
        if state is ConnectionState.RECONNECTED:
            self.reconnects += 1
        # The original never asked again after a reconnect; a request lost in an outage would leave the
        # agent waiting for the next periodic snapshot.
        if state is ConnectionState.RECONNECTED and self.phase is Phase.WAITING_FOR_TOPOLOGY:
            self._lane.post("topology request", self._request_topology)

    # --- The lifecycle (lane) ----------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.identity.lvs_virtual_ip:
            ip, _, mask = self.identity.lvs_virtual_ip.partition("|")
            self._extension("CreateLVSDummyInterface", LVS_DUMMY_VIRTUAL_IP=ip, LVS_SUBNET_MASK=mask)
        self._set_phase(Phase.WAITING_FOR_TOPOLOGY)
        self._request_topology()
        self._check_initialized()

    def _request_topology(self) -> None:
        """Requests the complete topology; the next wait check asks again if it has not arrived by then."""
        if self.phase is not Phase.WAITING_FOR_TOPOLOGY:
            return
        self._topology_requests += 1
        self._request(events.CompleteTopologyRequestEvent)
        self._schedule_wait_check()

    def _schedule_wait_check(self) -> None:
        if self._wait_check is not None:
            self._wait_check.cancel()  # one pending check at a time
        delay = self.config.agent.topology_request_interval * self._rng.uniform(1 - REQUEST_JITTER,
                                                                                1 + REQUEST_JITTER)
        try:
            self._wait_check = self.runtime.scheduler.call_later(
                delay, lambda: self._lane.post("wait check", self._check_wait), name="lifecycle wait check")
        except RuntimeError:  # the scheduler shut down: the agent is stopping
            self._wait_check = None

    def _check_wait(self) -> None:
        """Says what a long wait is for; waiting for the topology, asks for it again."""
        if self.phase not in (Phase.WAITING_FOR_TOPOLOGY, Phase.WAITING_FOR_INITIALIZATION):
            return
        waited = time.time() - self._phase_since
        now = time.monotonic()
        loud = self._last_wait_warning is None or now - self._last_wait_warning >= WAIT_WARNING_EVERY
        if loud:
            self._last_wait_warning = now
        if self.phase is Phase.WAITING_FOR_TOPOLOGY:
            held = self.outbox.depth > 0  # the broker has not taken the last request yet: pile up no more
            _log.log(logging.WARNING if loud else logging.DEBUG,
                     "still waiting for the complete topology from the control plane: %d request(s) in "
                     "%.0f s unanswered; %s", self._topology_requests, waited,
                     "the last one is still waiting for the broker" if held
                     else "asking again (is the control plane running, on the same broker?)")
            if held:
                self._schedule_wait_check()
            else:
                self._request_topology()
        else:
            _log.log(logging.WARNING if loud else logging.DEBUG, "still waiting for %s, for %.0f s",
                     self.waiting_for(), waited)
            self._schedule_wait_check()

    def _check_initialized(self) -> None:
        self._check_posted = False
        topology = self.state.topology
        if self.phase is Phase.WAITING_FOR_TOPOLOGY:
            if not topology.initialized:
                return
            _log.info("topology received (after %d request(s))", self._topology_requests)
            if self.extensions.wants("CompleteTopologyEvent"):  # the whole topology as JSON costs
                cluster = topology.cluster(self.identity.cluster_id)
                members = cluster.member_map if cluster is not None and cluster.member_map else {}
                self._extension("CompleteTopologyEvent",
                                TOPOLOGY_JSON=events.encode(topology.topology).decode(),
                                MEMBER_LIST_JSON=json.dumps({k: json.loads(events.encode(v))
                                                             for k, v in members.items()}))
            self._set_phase(Phase.WAITING_FOR_INITIALIZATION)
            self._schedule_wait_check()  # a whole interval before this wait is first reported
        if self.phase is not Phase.WAITING_FOR_INITIALIZATION:
            return
        status = topology.member_status(self.identity.member_id or "")
        if status is None or status == MemberStatus.CREATED:
            _log.info("member %s is %s; waiting for it to be initialized", self.identity.member_id,
                      status or "not in the topology")
            return
        self._initialized(status)

    def _initialized(self, status: str) -> None:
        _log.info("member %s initialized (status %s)", self.identity.member_id, status)
        self.runtime.subscribe([p for p in AGENT_SUBSCRIPTIONS if p != "topology/#"])
        self._request(events.CompleteTenantRequestEvent)
        self._request(events.CompleteApplicationSignUpsRequestEvent)
        if status == MemberStatus.INITIALIZED:
            self._extension("InstanceStartedEvent")
            self._publish(events.InstanceStartedEvent, transition=True)
        if status in (MemberStatus.INITIALIZED, MemberStatus.STARTING):
            self._extension("StartServers")
        if self.identity.persistence_mapping:
            self._extension("VolumeMount", VALUE1=self.identity.persistence_mapping)
        self.telemetry.start_logs()
        if status == MemberStatus.ACTIVE:
            _log.info("member %s is already active: nothing to publish again", self.identity.member_id)
            self._first_activation = False
            self._set_phase(Phase.ACTIVE)
            self.telemetry.start_health()
        elif status in (MemberStatus.INITIALIZED, MemberStatus.STARTING, MemberStatus.IN_MAINTENANCE):
            self._first_activation = status != MemberStatus.IN_MAINTENANCE
            if self.identity.repo_url:
                _log.info("Artifact repository found, waiting for artifact updated event to checkout "
                          "artifacts: [repo_url] %s", self.identity.repo_url)
                self._set_phase(Phase.WAITING_FOR_ARTIFACTS)
            else:
                self._start_activation()
        else:
            _log.warning("member %s is %s: it will not be activated", self.identity.member_id, status)
            self._set_phase(Phase.READY_TO_SHUTDOWN)

    def _on_artifact_updated(self, event: events.ArtifactUpdatedEvent) -> None:
        if self.artifacts is None:
            _log.debug("artifact update for cluster %s skipped: no REPO_URL, no artifact repository",
                       event.cluster_id)
            return
        self.artifacts.handle(event)  # announces through _on_artifact_update

    def _on_artifact_update(self, update: ArtifactUpdate) -> None:
        """Runs the ArtifactUpdatedEvent extension after a sync; the first one leads to activation."""
        event, spec = update.event, update.spec
        url = without_password(event.repo_url or "") if event is not None else spec.url
        # The password only as the event carried it (encrypted), never the decrypted one; the URL without
        # any password it held.
        self._extension("ArtifactUpdatedEvent",
                        ARTIFACT_UPDATED_CLUSTER_ID=event.cluster_id if event else self.identity.cluster_id,
                        ARTIFACT_UPDATED_TENANT_ID=spec.tenant_id,
                        ARTIFACT_UPDATED_REPO_URL=url,
                        ARTIFACT_UPDATED_REPO_PASSWORD=event.repo_password if event else None,
                        ARTIFACT_UPDATED_REPO_USERNAME=spec.username,
                        ARTIFACT_UPDATED_STATUS=event.status if event else None,
                        ARTIFACT_UPDATED_REVISION=update.result.revision,
                        ARTIFACT_UPDATED_SCHEDULER=update.scheduled)
        if self.phase is Phase.WAITING_FOR_ARTIFACTS:
            self._start_activation()

    def _on_signup_removed(self, event: events.ApplicationSignUpRemovedEvent) -> None:
        if self.artifacts is not None and event.application_id == self.identity.application_id \
                and event.tenant_id is not None:
            self.artifacts.remove_tenant(str(event.tenant_id))
        self._extension("ApplicationSignUpRemovedEvent")

    def _start_activation(self) -> None:
        self._set_phase(Phase.ACTIVATING)
        self._ports.start()  # activates once the application's ports accept connections

    def _activate(self) -> None:
        if self.phase is not Phase.ACTIVATING:
            return
        self._publish(events.InstanceActivatedEvent, transition=self._first_activation)
        self._first_activation = False
        self._set_phase(Phase.ACTIVE)
        self._extension("InstanceActivatedEvent")
        self.telemetry.start_health()

    def _cleanup(self) -> None:
        if self.phase is Phase.READY_TO_SHUTDOWN:
            return
        _log.info("cleanup requested")
        self._stop_periodic()
        if self.phase is not Phase.MAINTENANCE:
            self._publish(events.InstanceMaintenanceModeEvent)
            self._set_phase(Phase.MAINTENANCE)
        self._extension("clean")
        self._publish(events.InstanceReadyToShutdownEvent)
        self._set_phase(Phase.READY_TO_SHUTDOWN)

    # --- Operator requests (lane): posted by the control commands (pca_core.agent.commands) ------------

    def post(self, name: str, job: Callable[[], object]) -> None:
        """Runs ``job`` on the lifecycle's lane, after the steps already posted."""
        self._lane.post(name, job)

    def maintenance_on(self, stop: bool) -> None:
        """Takes an active (or activating) member out of service; with ``stop``, then stops the agent."""
        if self.phase in (Phase.ACTIVE, Phase.ACTIVATING):
            self._stop_periodic()
            self._publish(events.InstanceMaintenanceModeEvent)
            self._set_phase(Phase.MAINTENANCE)
        else:
            _log.warning("maintenance on: the agent is %s; nothing to do", self.phase)
        if stop:
            _log.info("maintenance on --stop: shutting down")
            self.stop_event.set()

    def maintenance_off(self) -> None:
        """Returns a member in maintenance to service, through the port check."""
        if self.phase is not Phase.MAINTENANCE:
            _log.warning("maintenance off: the agent is %s, not in maintenance", self.phase)
            return
        self._start_activation()

    def sync(self) -> None:
        """Syncs every known artifact repository now, announcing those that changed."""
        assert self.artifacts is not None
        try:
            self.artifacts.sync_all()
        except ArtifactSyncError as exc:
            _log.error("%s", exc)

    # --- Helpers -----------------------------------------------------------------------------------------

    def _publish(self, cls: type[events.Event], *, transition: bool = False) -> None:
        event = status_event(cls, self.identity)
        key = f"{cls.__name__}:{self.identity.member_id}" if transition else None
        if self.outbox.put(cls.TOPIC, events.encode(event), transition=key):
            _log.info("%s queued for publishing", cls.__name__)
        else:  # the outbox said why, naming its file
            _log.debug("%s was published before for this member; not again", cls.__name__)

    def _request(self, cls: type[events.Event]) -> None:
        self.outbox.put(cls.TOPIC, events.encode(cls()))

    def _extension(self, event: str, **extra: object) -> bool:
        """Runs ``event``'s extensions; True when they succeeded (or nothing runs for it)."""
        if not self.extensions.wants(event):  # no script, no handler: its values are not worked out
            return True
        urls = self.config.transport.urls
        # MB_IP: the broker's host, as the original passed the one it was connected to.
        mb_ip = urls[0].split("://")[-1].rsplit(":", 1)[0].rpartition("@")[2] if urls else None
        values = extension_values(event, self.config, self.state.topology, mb_ip=mb_ip, extra=extra)
        return self.extensions.run(event, values)

    def _stop_periodic(self) -> None:
        self.telemetry.stop_health()
        self._ports.stop()
