"""The LogPublisher contract: a sink for log lines and health statistics."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pca_core.api.plugin import Plugin

if TYPE_CHECKING:
    from pca_core.config import PublisherConfig


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record for a sink.

    Attributes:
        stream: what the record is: ``logs`` (a line of a tailed file) or ``health`` (a statistic).
        timestamp: seconds since the epoch.
        fields: the record's content, e.g. ``{"line": ..., "path": ...}`` or
            ``{"name": "memory_consumption", "value": 12.5, "member_id": ...}``.
    """

    stream: str
    timestamp: float
    fields: Mapping[str, Any] = field(default_factory=dict)


class LogPublisher(Plugin, abc.ABC):
    """A sink for records.

    The contract a log publisher plugin provides:

    - :meth:`publish` returns when the sink accepted the whole batch (acknowledged where the protocol
      allows) and raises :class:`pca_core.api.errors.LogPublishError` otherwise, so the core can retry
      the batch without loss. Sinks that cannot acknowledge say so by not declaring the ``ack`` capability.
    - The core owns reading files (offsets, rotation, truncation); a publisher never sees files.
    - :meth:`close` flushes what it can within its timeout and is idempotent.

    Args:
        config: the core's settings for this publisher (which streams it receives).
        options: the plugin's own options, validated against :attr:`Options`.
    """

    def __init__(self, config: PublisherConfig, options: Any) -> None:
        self.config = config
        self.options = options

    @abc.abstractmethod
    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> None:
        """Delivers ``batch``; returns once the sink accepted it."""

    def flush(self, timeout: float | None = None) -> None:
        """Pushes out anything buffered; the default has nothing to flush."""

    def close(self, timeout: float | None = None) -> None:
        """Releases the sink; the default holds nothing."""
