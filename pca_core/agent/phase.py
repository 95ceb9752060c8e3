"""The phases of the agent's lifecycle, as ``pca status``, the metrics and the lifecycle name them."""

from __future__ import annotations

import enum

__all__ = ["Phase"]


class Phase(enum.StrEnum):
    """Where the agent is in its lifecycle."""

    STARTING = "starting"
    WAITING_FOR_TOPOLOGY = "waiting for the complete topology"
    WAITING_FOR_INITIALIZATION = "waiting for the member to be initialized"
    WAITING_FOR_ARTIFACTS = "waiting for the first artifact update"
    ACTIVATING = "waiting for the ports"
    ACTIVE = "active"
    MAINTENANCE = "in maintenance"
    READY_TO_SHUTDOWN = "ready to shut down"
