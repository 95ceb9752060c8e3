"""Change notifications: models tell observers what changed, synchronously, after each update."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)

C = TypeVar("C")


class Observable(Generic[C]):
    """Keeps observers and tells them of changes of type ``C``.

    An observer is called on the thread that applied the change (the dispatcher), after the model is
    updated; it must not block. An observer that raises is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._observers: list[Callable[[C], None]] = []
        self._observers_lock = threading.Lock()

    def observe(self, observer: Callable[[C], None]) -> Callable[[], None]:
        """Calls ``observer(change)`` for every later change; returns a function that stops it."""
        with self._observers_lock:
            self._observers.append(observer)

        def stop() -> None:
            with self._observers_lock:
                if observer in self._observers:
                    self._observers.remove(observer)

        return stop

    def _emit(self, changes: Iterable[C]) -> None:
        with self._observers_lock:
            observers = list(self._observers)
        if not observers:
            return
        for change in changes:
            for observer in observers:
                try:
                    observer(change)
                except Exception:
                    _log.exception("observer failed on %r", change)
