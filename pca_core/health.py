"""Health statistics: memory use and load average, sampled on the core scheduler.

Every ``health.interval`` seconds the sampler emits two records of stream ``health`` to the record sink,
named as in the Stratos health stream (``memory_consumption``, ``load_average``) and carrying the
member's identity. The values are what the original agent's default reader gave: used memory in percent,
and the 1-minute load average divided by the CPU count, times 100.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from pca_core.log_publisher import LogRecord
from pca_core.payload import Identity
from pca_core.scheduler import Scheduler, Task

_log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")


class RecordEmitter(Protocol):
    """Where records go (the :class:`pca_core.records.RecordSink`)."""

    def emit(self, records: Sequence[LogRecord]) -> None:
        """Takes records without blocking."""


def sample_memory_percent(meminfo: Path = MEMINFO) -> float:
    """Used memory in percent: (MemTotal - MemAvailable) / MemTotal x 100, as psutil computes it.

    Raises:
        OSError: /proc/meminfo cannot be read.
        ValueError: it lacks MemTotal or MemAvailable.
    """
    fields = {}
    for line in meminfo.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            fields[key] = int(rest.split()[0])
    total, available = fields["MemTotal"], fields["MemAvailable"]
    return (total - available) / total * 100 if total else 0.0


def sample_load_percent() -> float:
    """The 1-minute load average per CPU, in percent."""
    return os.getloadavg()[0] / (os.cpu_count() or 1) * 100


class HealthSampler:
    """Samples the instance's health and emits it as records of stream ``health``.

    Args:
        identity: the member the statistics are about.
        sink: where the records go.
        clock: the time source of the records' timestamps.
        memory: the memory sampler.
        load: the load sampler.
    """

    def __init__(self, identity: Identity, sink: RecordEmitter, *, clock: Callable[[], float] = time.time,
                 memory: Callable[[], float] = sample_memory_percent,
                 load: Callable[[], float] = sample_load_percent) -> None:
        self._sink = sink
        self._clock = clock
        self._samplers = (("memory_consumption", memory), ("load_average", load))
        self._identity_fields = {
            "cluster_id": identity.cluster_id, "cluster_instance_id": identity.cluster_instance_id,
            "network_partition_id": identity.network_partition_id, "member_id": identity.member_id,
            "partition_id": identity.partition_id,
        }
        self._failing = False

    def tick(self) -> list[LogRecord]:
        """Samples once and emits the records; a failed sample is logged (once) and emits nothing."""
        try:
            values = [(name, float(sample())) for name, sample in self._samplers]
        except (OSError, ValueError, KeyError) as exc:
            if not self._failing:
                _log.warning("health statistics cannot be sampled: %s", exc)
            self._failing = True
            return []
        self._failing = False
        now = self._clock()
        records = [LogRecord("health", now, {"name": name, "value": value, **self._identity_fields})
                   for name, value in values]
        self._sink.emit(records)
        return records

    def start(self, scheduler: Scheduler, interval: float) -> Task:
        """Samples every ``interval`` seconds on the scheduler (no thread of its own)."""
        return scheduler.every(interval, self.tick, name="health")
