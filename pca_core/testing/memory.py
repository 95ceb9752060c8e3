"""A :class:`Broker` for the in-process ``memory`` transport: the smallest complete example of one."""

from __future__ import annotations

import uuid

from pca_core.builtin import memory
from pca_core.testing.broker import Broker

__all__ = ["MemoryBroker"]


class MemoryBroker(Broker):
    """A private in-process bus that tests can take down and bring back.

    Args:
        name: the bus name; a unique one by default, so that nothing else shares the bus.

    Attributes:
        bus: the bus that :attr:`url` names.
        dead_bus: a bus that stays down, named by :attr:`dead_url`.
    """

    def __init__(self, name: str | None = None) -> None:
        self.bus = name or f"broker-{uuid.uuid4().hex}"
        self.dead_bus = f"{self.bus}-dead"
        self.url = memory.SCHEME + self.bus
        self.dead_url = memory.SCHEME + self.dead_bus
        memory.set_available(self.dead_bus, False)
        memory.set_available(self.bus, True)

    def start(self) -> None:
        """Brings the bus back; its transports report ``RECONNECTED`` with their subscriptions intact."""
        memory.set_available(self.bus, True)

    def stop(self) -> None:
        """Takes the bus down; its transports report ``LOST`` and publishing fails."""
        memory.set_available(self.bus, False)

    def close(self) -> None:
        """Brings both buses up again, so that the module keeps no state for them once they are unused."""
        memory.set_available(self.bus, True)
        memory.set_available(self.dead_bus, True)
