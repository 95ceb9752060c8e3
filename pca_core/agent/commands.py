"""The agent's control commands: what ``pca status``, ``pca maintenance`` and ``pca sync`` ask of it.

They run on the control channel's thread and answer at once: a command that changes something posts the
change to the lifecycle's lane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pca_core._version import __version__
from pca_core.agent.control import Command
from pca_core.agent.metrics import is_ready
from pca_core.agent.phase import Phase
from pca_core.api.errors import PcaError

if TYPE_CHECKING:
    from pca_core.agent.lifecycle import Agent


def control_commands(agent: Agent) -> dict[str, Command]:
    """The commands of ``agent``, by name, for its :class:`~pca_core.agent.control.ControlServer`."""

    def status(_arguments: dict[str, Any]) -> dict[str, Any]:
        transport = agent.runtime.transport
        return {
            "phase": str(agent.phase),
            "since": agent.phase_since,
            "ready": is_ready(agent),
            "member_id": agent.identity.member_id,
            "member_status": agent.state.topology.member_status(agent.identity.member_id or ""),
            "waiting_for": agent.waiting_for(),
            "transport": transport.state.value if transport is not None else None,
            "reconnects": agent.reconnects,
            "outbox_depth": agent.outbox.depth,
            "artifact_revision": agent.artifacts.revision if agent.artifacts is not None else None,
            "version": __version__,
        }

    def maintenance(arguments: dict[str, Any]) -> dict[str, Any]:
        mode, stop, phase = arguments.get("mode"), bool(arguments.get("stop")), agent.phase
        if mode == "on":
            if phase not in (Phase.ACTIVE, Phase.ACTIVATING) and not stop:
                why = "it is in maintenance already" if phase is Phase.MAINTENANCE else \
                    "only an active (or activating) member can go into maintenance"
                raise PcaError(f"maintenance on: the agent is {phase}: {why}")
            agent.post("maintenance on", lambda: agent.maintenance_on(stop))
        elif mode == "off":
            if phase is not Phase.MAINTENANCE:
                raise PcaError(f"maintenance off: the agent is {phase}, not in maintenance")
            agent.post("maintenance off", agent.maintenance_off)
        else:
            raise PcaError(f"maintenance: expected mode 'on' or 'off', got {mode!r}")
        return {"phase": str(phase), "requested": f"maintenance {mode}"}

    def sync(_arguments: dict[str, Any]) -> dict[str, Any]:
        if agent.artifacts is None or not agent.artifacts.known:
            raise PcaError("no artifact repository is known yet")
        agent.post("sync", agent.sync)
        return {"requested": "sync"}

    return {"status": status, "maintenance": maintenance, "sync": sync}
