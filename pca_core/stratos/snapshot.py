"""What every event-fed model shares: routing, the initialization gate and skipping repeated snapshots.

Each model (topology, tenants, signups, domain mappings) is a :class:`SnapshotModel`: it declares the
events it handles and its complete (snapshot) event, and applies one decoded event at a time. The base
class decides what reaches it:

- events the model does not handle are ignored without being decoded;
- a complete event whose bytes are those of the last complete event applied, with no change since, is
  skipped without being decoded: reconciling it would change nothing, and Stratos republishes its
  snapshots periodically (the topology every minute). The model keeps that one payload and compares
  bytes: a memcmp, about 30 times cheaper than hashing a multi-megabyte topology;
- a gated model drops incremental events until its first complete event, before decoding them, as
  Java's INIT gate does (``stratos/processors.md`` §1).

Updates run under the model's lock; observers are told the changes after it is released.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar, TypeVar

from pca_core.stratos import events
from pca_core.stratos.observe import Observable

__all__ = ["SnapshotModel"]

_log = logging.getLogger(__name__)

C = TypeVar("C")


class SnapshotModel(Observable[C]):
    """A model kept from a tree of events: a complete snapshot event and incremental events.

    A subclass declares :attr:`COMPLETE`, :attr:`HANDLED` and :attr:`GATED`, and implements
    :meth:`_apply_event`. Every update returns the list of changes it made (empty when nothing changed)
    and tells the observers the same changes, in the same order, once the lock is released.
    """

    COMPLETE: ClassVar[type[events.Event]]
    """The complete (snapshot) event: the first one initializes the model, each one is reconciled."""
    HANDLED: ClassVar[frozenset[type[events.Event]]]
    """Every event class the model applies, :attr:`COMPLETE` included; the others are ignored."""
    GATED: ClassVar[bool] = False
    """Whether incremental events are dropped until the first complete event initializes the model."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._initialized = False
        # The complete payload the model still reflects, or None once it has moved on (an incremental
        # change, or a complete event applied without its bytes). One message at most.
        self._snapshot: bytes | None = None

    @property
    def initialized(self) -> bool:
        """Whether a complete event was applied (set once, never reset)."""
        return self._initialized

    @property
    def lock(self) -> threading.RLock:
        """Held during each update; hold it to read several values consistently from another thread."""
        return self._lock

    def handle(self, topic: str, payload: bytes | str) -> list[C]:
        """Decodes one message and applies it.

        Events the model does not handle, incremental events a gated model receives before it is
        initialized, and a complete event whose bytes the model still reflects are all ignored without
        being decoded.

        Returns:
            The changes made, in order, which observers have also been told; empty when nothing changed.

        Raises:
            events.EventDecodeError: the topic names no Stratos event, or the payload does not decode as
                that event. The model is unchanged.
        """
        cls = events.event_class(topic)
        if cls not in self.HANDLED:
            _log.debug("%s: not its event, ignored: %s", type(self).__name__, topic)
            return []
        snapshot = None
        if cls is self.COMPLETE:
            snapshot = payload.encode() if isinstance(payload, str) else payload
            if snapshot == self._snapshot:
                _log.debug("%s: complete event it still reflects, skipped", type(self).__name__)
                return []
        elif self.GATED and not self._initialized:
            # Checked again under the lock; here it spares the decoding, as Java's gate spares the parsing.
            _log.debug("%s: not initialized, %s dropped", type(self).__name__, cls.__name__)
            return []
        return self._update(events.decode(topic, payload), snapshot)

    def apply(self, event: events.Event) -> list[C]:
        """Applies an already decoded event; events the model does not handle are ignored.

        A complete event applied this way is reconciled; as its bytes are unknown, no later payload is
        skipped until a complete event arrives through :meth:`handle` again.

        Returns:
            The changes made, in order, which observers have also been told; empty when nothing changed.
        """
        if type(event) not in self.HANDLED:
            _log.debug("%s: not its event, ignored: %s", type(self).__name__, type(event).__name__)
            return []
        return self._update(event, None)

    def _update(self, event: events.Event, snapshot: bytes | None) -> list[C]:
        complete = type(event) is self.COMPLETE
        with self._lock:
            if not complete and self.GATED and not self._initialized:
                _log.debug("%s: not initialized, %s dropped", type(self).__name__, type(event).__name__)
                return []
            changes = self._apply_event(event)
            if changes is None:  # a snapshot without content: the model stays as it was
                return []
            if complete:
                self._initialized = True
                self._snapshot = snapshot
            elif changes:
                self._snapshot = None  # the model no longer is that snapshot
        if changes:
            self._emit(changes)
        return changes

    def _apply_event(self, event: events.Event) -> list[C] | None:
        """Applies one decoded event of :attr:`HANDLED`; called with the lock held.

        The model is still uninitialized while its first complete event is applied (:attr:`initialized`
        becomes true after this returns), so a subclass can tell the first snapshot from the later ones.

        Returns:
            The changes made, in order; None only for a complete event without content (e.g. a null
            list), which leaves the model as it was: not initialized by it, and not reflecting it.
        """
        raise NotImplementedError
