"""The events the agent publishes: instance status and initializer requests, as Java declares them."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from pca_core.stratos.events import (
    CompleteApplicationSignUpsRequestEvent,
    CompleteTenantRequestEvent,
    CompleteTopologyRequestEvent,
    Event,
    InstanceActivatedEvent,
    InstanceMaintenanceModeEvent,
    InstanceReadyToShutdownEvent,
    InstanceStartedEvent,
)
from pca_core.stratos.payload import Identity

_E = TypeVar("_E", bound=Event)

STATUS_EVENTS = (InstanceStartedEvent, InstanceActivatedEvent, InstanceMaintenanceModeEvent,
                 InstanceReadyToShutdownEvent)
"""What the agent says of itself, on ``instance/status/<name>``."""

REQUEST_EVENTS = (CompleteTopologyRequestEvent, CompleteTenantRequestEvent,
                  CompleteApplicationSignUpsRequestEvent)
"""What the agent asks the control plane for, on ``initializer/<name>``; their body is ``{}``."""


def status_event(cls: type[_E], identity: Identity) -> _E:
    """An instance status event of class ``cls`` for this instance.

    Each field the Java class declares is filled from the identity, and only those: ``instanceId`` (from
    the payload's ``INSTANCE_ID``) goes only where Java has it (InstanceActivatedEvent), and ``groupId``
    (from ``GROUP_ID``, else ``GROUP_NAME``) everywhere Java has it. The original agent sent a null
    ``instanceId``, sent it where Java lacks it, and never sent ``groupId``.
    """
    values = {f.name: getattr(identity, f.name) for f in msgspec.structs.fields(cls)}
    return cls(**values)
