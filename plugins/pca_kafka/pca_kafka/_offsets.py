"""Which offsets may be committed: the last of an unbroken run of acknowledged messages, per partition."""

from __future__ import annotations

from collections import deque
from typing import Any


class Offsets:
    """Tracks delivered and acknowledged offsets of each partition, on the consumer thread.

    Acknowledgements may come in any order; a partition's committable offset is one past the last message
    of the unbroken run of acknowledged ones from its oldest delivered message, so that a restart resumes
    at the first message not acknowledged and loses none.
    """

    def __init__(self) -> None:
        self._pending: dict[Any, deque[int]] = {}  # partition -> offsets delivered, not yet committable
        self._acked: dict[Any, set[int]] = {}
        self._due: dict[Any, int] = {}  # partition -> offset to commit (one past the last handled)
        self.in_flight = 0

    def delivered(self, partition: Any, offset: int) -> None:
        """A message of ``partition`` went to the handlers."""
        self._pending.setdefault(partition, deque()).append(offset)
        self.in_flight += 1

    def acked(self, partition: Any, offset: int) -> None:
        """The message at ``offset`` was acknowledged (by every handler it reached)."""
        pending = self._pending.get(partition)
        if pending is None:
            return  # its partition was revoked meanwhile
        acked = self._acked.setdefault(partition, set())
        acked.add(offset)
        self.in_flight -= 1
        while pending and pending[0] in acked:
            acked.discard(first := pending.popleft())
            self._due[partition] = first + 1

    def committable(self) -> dict[Any, int]:
        """The offsets to commit now (each partition's next offset); they count as committed."""
        due, self._due = self._due, {}
        return due

    def retry(self, offsets: dict[Any, int]) -> None:
        """A commit of ``offsets`` failed: they are due again, unless a later one is due already."""
        for partition, offset in offsets.items():
            self._due[partition] = max(offset, self._due.get(partition, 0))

    def forget(self, partitions: Any) -> None:
        """``partitions`` were revoked: what was delivered from them no longer counts."""
        for partition in partitions:
            pending = self._pending.pop(partition, ())
            acked = self._acked.pop(partition, set())
            self.in_flight -= len(pending) - len(acked)
            self._due.pop(partition, None)
