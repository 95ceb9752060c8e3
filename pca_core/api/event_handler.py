"""The event-handler contract: Python extensions that run on lifecycle events."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pca_core.api.plugin import Plugin
from pca_core.api.settings import PluginChoice


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler may read besides the event's values.

    Attributes:
        payload: the instance's launch parameters (``MEMBER_ID``, ``CLUSTER_ID``...), as strings.
        logger: the logger to write to (``pca.handler.<name>``).
        topology: the agent's topology model, read-only; None until the first complete topology arrived.
        tenants: the agent's tenant model, read-only; None until the first complete tenant event arrived.
    """

    payload: Mapping[str, str]
    logger: logging.Logger
    topology: Any = None
    tenants: Any = None


class EventHandler(Plugin, abc.ABC):
    """A Python extension called on lifecycle events, next to the bash extension scripts.

    The contract an event handler provides:

    - :attr:`events` names the events it wants (``InstanceStartedEvent``, ``StartServers``, ``clean``, ...);
      an empty set means every event.
    - :meth:`handle` receives the same values a bash extension gets, without the ``STRATOS_`` prefix. It
      runs on a core worker thread; an exception is logged and does not stop other handlers or the agent.

    Args:
        config: its entry in ``[[event_handlers]]``.
        options: the handler's own options, validated against :attr:`Options`.
    """

    events: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: PluginChoice, options: Any) -> None:
        self.config = config
        self.options = options

    def wants(self, event: str) -> bool:
        """Tells whether the handler is to be called for ``event``."""
        return not self.events or event in self.events

    @abc.abstractmethod
    def handle(self, event: str, values: Mapping[str, str], context: HandlerContext) -> None:
        """Acts on one event."""

    def close(self) -> None:
        """Releases what the handler holds; the default holds nothing."""
