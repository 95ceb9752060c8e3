"""Records on their way to the receivers, made databridge events when a bundle needs them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, overload

from pca_core.api import LogRecord
from pca_thrift.streams import DatabridgeStream


class Event(NamedTuple):
    """A record as an event: its databridge stream, its time stamp in ms and its values."""

    stream: DatabridgeStream
    timestamp: int
    values: tuple[Any, ...]


class Events(Sequence[Event | None]):
    """The events of a batch, each made from its record on first use, once, whichever receiver asks first.

    So the first bundle leaves before the whole batch was converted. None stands for a record of a stream
    the publisher does not send.

    Args:
        records: the batch.
        convert: makes the events of some of its records (None for a record not sent), in order.
    """

    def __init__(self, records: Sequence[LogRecord],
                 convert: Callable[[Sequence[LogRecord]], list[Event | None]]) -> None:
        self._records = records
        self._convert = convert
        self._events: list[Event | None] = []
        self._lock = threading.Lock()  # receivers are sent to in parallel

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> Event | None: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event | None]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event | None] | None:
        if isinstance(index, slice):
            self._convert_up_to(index.indices(len(self))[1])
        else:
            self._convert_up_to(min(index if index >= 0 else index + len(self), len(self) - 1) + 1)
        return self._events[index]

    def __iter__(self) -> Iterator[Event | None]:
        self._convert_up_to(len(self))
        return iter(self._events)

    def _convert_up_to(self, stop: int) -> None:
        """Makes sure the events of the first ``stop`` records exist."""
        events = self._events
        if len(events) < stop:
            with self._lock:
                events += self._convert(self._records[len(events):stop])
