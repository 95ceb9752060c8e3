"""Health statistics: memory use and load average, sampled on the core scheduler.

Every ``health.interval`` seconds the sampler emits two records of stream ``health``, named as the
Stratos health stream names them in ``health_description`` (``memory_consumption``, ``load_average``) and
carrying the member's identity. The values are what the original agent's default reader gave: used
memory in percent as ``psutil.virtual_memory().percent`` computes it, and the 1-minute load average per
CPU in percent. The sampler has no thread of its own; its ticks run on the scheduler's workers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from pca_core.api.log_publisher import LogRecord
from pca_core.runtime.scheduler import Scheduler, Task
from pca_core.stratos.payload import Identity

__all__ = ["HealthSampler", "RecordEmitter", "sample_load_percent", "sample_memory_percent"]

_log = logging.getLogger(__name__)

MEMINFO = Path("/proc/meminfo")

MEMORY_CONSUMPTION = "memory_consumption"
LOAD_AVERAGE = "load_average"


class RecordEmitter(Protocol):
    """Where records go: :class:`pca_core.telemetry.records.RecordSink` is one."""

    def emit(self, records: Sequence[LogRecord]) -> None:
        """Takes records without blocking."""


def sample_memory_percent(meminfo: Path = MEMINFO) -> float:
    """Used memory in percent, rounded to one decimal, as ``psutil.virtual_memory().percent`` gives it.

    That is ``(MemTotal - MemAvailable) / MemTotal * 100``. Kernels older than 3.14 have no
    ``MemAvailable``; there it is estimated as ``MemFree + Cached + SReclaimable`` (psutil refines that
    estimate from ``/proc/zoneinfo``; the two differ by a little).

    Args:
        meminfo: the file to read, in the format of ``/proc/meminfo``.

    Raises:
        OSError: the file cannot be read.
        ValueError: it lacks ``MemTotal`` or ``MemFree``, or a value is not a number.
    """
    values: dict[str, int] = {}
    for line in meminfo.read_text(encoding="ascii", errors="replace").splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemFree", "MemAvailable", "Cached", "SReclaimable"):
            number = rest.split()[:1]
            if not number or not number[0].isdigit():
                raise ValueError(f"{meminfo}: {key}: expected a number of kB, got {rest.strip()!r}")
            values[key] = int(number[0])
    if "MemTotal" not in values or "MemFree" not in values:
        raise ValueError(f"{meminfo} has no MemTotal or MemFree")
    total = values["MemTotal"]
    available = values.get("MemAvailable")
    if available is None:
        available = values["MemFree"] + values.get("Cached", 0) + values.get("SReclaimable", 0)
    if available > total:  # seen in some containers (LXC); psutil falls back to the free memory
        available = values["MemFree"]
    if total <= 0:
        return 0.0
    return round((total - available) / total * 100, 1)


def sample_load_percent() -> float:
    """The 1-minute load average per CPU, in percent: ``os.getloadavg()[0] / os.cpu_count() * 100``.

    Raises:
        OSError: the load average cannot be obtained.
    """
    return os.getloadavg()[0] / (os.cpu_count() or 1) * 100


class HealthSampler:
    """Samples the instance's health and emits it as records of stream ``health``.

    Each record's fields are ``name`` (``memory_consumption`` or ``load_average``), ``value`` (a float)
    and the member's identity: ``cluster_id``, ``cluster_instance_id``, ``network_partition_id``,
    ``member_id``, ``partition_id``. An identity value the payload did not give is an empty string, since
    the Stratos health stream declares every one a non-null string.

    Args:
        identity: the member the statistics are about.
        sink: where the records go.
        clock: the time source of the records' timestamps (seconds since the epoch).
        memory: the memory sampler.
        load: the load sampler.
    """

    def __init__(self, identity: Identity, sink: RecordEmitter, *, clock: Callable[[], float] = time.time,
                 memory: Callable[[], float] = sample_memory_percent,
                 load: Callable[[], float] = sample_load_percent) -> None:
        self._sink = sink
        self._clock = clock
        self._samplers = ((MEMORY_CONSUMPTION, memory), (LOAD_AVERAGE, load))
        self._identity_fields = {
            "cluster_id": identity.cluster_id or "",
            "cluster_instance_id": identity.cluster_instance_id or "",
            "network_partition_id": identity.network_partition_id or "",
            "member_id": identity.member_id or "",
            "partition_id": identity.partition_id or "",
        }
        self._failing = False

    def tick(self) -> list[LogRecord]:
        """Samples once and emits the two records.

        A sample that fails is logged (once, until sampling works again) and the tick emits nothing.

        Returns:
            The records emitted; empty when sampling failed.
        """
        try:
            values = [(name, float(sample())) for name, sample in self._samplers]
        except Exception as exc:  # whatever a sampler raises, the periodic task must go on
            if not self._failing:
                _log.warning("health statistics cannot be sampled: %s; retrying every tick", exc)
                self._failing = True
            return []
        if self._failing:
            _log.info("health statistics are sampled again")
            self._failing = False
        now = self._clock()
        records = [LogRecord("health", now, {"name": name, "value": value, **self._identity_fields})
                   for name, value in values]
        self._sink.emit(records)
        return records

    def start(self, scheduler: Scheduler, interval: float) -> Task:
        """Runs :meth:`tick` every ``interval`` seconds on the scheduler; cancel the task to stop.

        Raises:
            ValueError: ``interval`` is not positive.
        """
        return scheduler.every(interval, self.tick, name="health")
