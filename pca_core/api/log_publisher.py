"""The LogPublisher contract: a sink for log lines and health statistics."""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pca_core.api.plugin import Capability, Plugin
from pca_core.api.settings import PublisherConfig


class AttributeType(enum.StrEnum):
    """The type of a stream attribute's values (those a databridge or an index knows)."""

    STRING = "string"
    INT = "int"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a stream's records: a key of :attr:`LogRecord.fields` and the type of its values."""

    name: str
    type: AttributeType


@dataclass(frozen=True, slots=True)
class StreamDefinition:
    """What the records of one stream hold.

    Attributes:
        name: the stream's name, as records carry it in :attr:`LogRecord.stream` (``logs``, ``health``).
        version: the definition's version; it changes whenever the attributes do.
        attributes: the record fields, in a fixed order; a record may lack some (the value is then None,
            see :meth:`values`).
        description: what the stream is, for a person.
        properties: what is the same for every record of the stream: the member's identity
            (``member_id``, ``cluster_id``, ``tenant_id``...), for a sink that names streams after them.
    """

    name: str
    version: str
    attributes: tuple[Attribute, ...]
    description: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)

    def values(self, record: LogRecord) -> tuple[Any, ...]:
        """The record's values in attribute order, None where the record lacks one."""
        fields = record.fields
        return tuple(fields.get(attribute.name) for attribute in self.attributes)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record for a sink.

    Attributes:
        stream: the name of its :class:`StreamDefinition`: ``logs`` (a line of a tailed file) or ``health``
            (a statistic).
        timestamp: seconds since the epoch.
        fields: the record's content, keyed by attribute name, e.g. ``{"line": ..., "path": ...}``.
    """

    stream: str
    timestamp: float
    fields: Mapping[str, Any] = field(default_factory=dict)


class LogPublisher(Plugin, abc.ABC):
    """A sink for records.

    The contract a log publisher plugin provides:

    - :meth:`open` is called before the first :meth:`publish`, with the definitions of every stream the
      publisher receives, and again before the next batch after a ``publish`` that raised or accepted
      nothing (a receiver that restarted may have forgotten them); a publisher that must announce streams
      to its receiver (a databridge's ``defineStream``) may do so there or on its first connection.
    - :meth:`publish` delivers a batch, oldest record first, and returns how many records, from the start
      of the batch, the sink accepted; the core keeps the others and offers them again, so nothing is lost
      (at least once). With :attr:`Capability.ACK` a record counts as accepted only once the receiver
      acknowledged it. When nothing can be delivered it raises
      :class:`~pca_core.api.LogPublishError` (its message is logged) or returns 0.
    - The core owns reading files (offsets, rotation, truncation) and batching (``batch_size``,
      ``flush_interval``, ``max_buffered`` of :class:`~pca_core.api.PublisherConfig`); a publisher never
      sees files and calls ``publish`` from one thread at a time.
    - :meth:`close` flushes what it can within its timeout and is idempotent; a ``publish`` after it
      raises :class:`~pca_core.api.LogPublishError`.

    Args:
        config: the core's settings for this publisher (which streams it receives, batching).
        options: the plugin's own options, validated against :attr:`Options`.
    """

    known_capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.ACK, Capability.TLS})

    def __init__(self, config: PublisherConfig, options: Any) -> None:
        self.config = config
        self.options = options
        self.streams: dict[str, StreamDefinition] = {}

    def open(self, streams: Sequence[StreamDefinition], *, timeout: float | None = None) -> None:
        """Receives the definitions of the streams to come; the default keeps them in :attr:`streams`.

        Raises:
            LogPublishError: the streams could not be announced; the core calls ``open`` again before the
                next batch.
        """
        self.streams = {stream.name: stream for stream in streams}

    @abc.abstractmethod
    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> int:
        """Delivers ``batch``; returns how many of its first records the sink accepted (0 to ``len``).

        Raises:
            LogPublishError: nothing could be delivered; the whole batch is offered again later.
        """

    def check(self, *, timeout: float | None = None) -> str | None:
        """Checks that the receivers accept a connection from this publisher, sending no record.

        For ``pca config check --connect``: connects (TLS, handshake, login, as :meth:`publish` would)
        to every receiver the options name, then disconnects, within ``timeout`` seconds (None: the
        section's ``publish_timeout``). Called on a publisher that was built and never opened; the core
        calls :meth:`close` afterwards.

        Returns:
            What was reached, for a person (``127.0.0.1:24224 accepted``); None when the plugin offers no
            such check, which is the default: ``--connect`` then reports the publisher as not checked.

        Raises:
            LogPublishError: a receiver cannot be reached or refused the publisher; the message names it
                and never holds a secret.
        """
        return None

    def flush(self, timeout: float | None = None) -> None:
        """Pushes out anything buffered; the default has nothing to flush."""

    def close(self, timeout: float | None = None) -> None:
        """Releases the sink; the default holds nothing."""
