"""The instance's health statistics and log lines, on their way to the log publishers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pca_core.agent.health import HealthSampler
from pca_core.api.log_publisher import LogPublisher
from pca_core.config.schema import Config
from pca_core.runtime.scheduler import Scheduler, Task
from pca_core.stratos.payload import Identity
from pca_core.telemetry.records import RecordSink
from pca_core.telemetry.streams import HEALTH, LOGS, core_streams, log_fields
from pca_core.telemetry.tailer import LogTailer, Multiline


class Telemetry:
    """The record sink, the health sampler and the log tailer of one agent.

    The sink delivers from the start; the health sampler runs while the member is active; the tailer,
    started once the member is initialized, runs until the agent stops. Each runs on the core scheduler.

    Args:
        config: the agent's configuration (``health``, ``logs``, ``agent.state_dir``).
        identity: the member, named in every record and stream definition.
        publishers: the loaded log publishers.
        scheduler: the core scheduler.
    """

    def __init__(self, config: Config, identity: Identity, publishers: Sequence[LogPublisher],
                 scheduler: Scheduler) -> None:
        self._config = config
        self._identity = identity
        self._scheduler = scheduler
        self.sink = RecordSink(publishers, scheduler, streams=core_streams(identity))
        self._health: Task | None = None
        self._tailer: LogTailer | None = None

    def start_health(self) -> None:
        """Samples health statistics every ``health.interval`` seconds, if a publisher receives them."""
        health = self._config.health
        if not health.enabled or not self.sink.capacity(HEALTH) or self._health is not None:
            return
        self._health = HealthSampler(self._identity, self.sink).start(self._scheduler, health.interval)

    def stop_health(self) -> None:
        """Stops sampling (maintenance, cleanup); idempotent."""
        task, self._health = self._health, None
        if task is not None:
            task.cancel()

    def start_logs(self) -> None:
        """Tails ``logs.paths``, if enabled and a publisher receives the lines; idempotent."""
        logs = self._config.logs
        capacity = self.sink.capacity(LOGS)  # 0: no publisher receives the lines
        if not logs.enabled or not logs.paths or self._tailer is not None or not capacity:
            return
        # Half the smallest buffer at most on their way, so that lines wait in their files while a
        # publisher is down instead of pushing health records (or each other) out of its buffer.
        multiline = logs.multiline
        self._tailer = LogTailer(
            logs.paths, self.sink, fields=log_fields(self._identity),
            max_unsettled=max(1, capacity // 2), max_unsettled_bytes=logs.max_buffered_bytes,
            max_line_bytes=logs.max_line_bytes, save_interval=logs.positions_interval,
            multiline=None if multiline.first_line is None else
            Multiline(multiline.first_line, multiline.flush_timeout, logs.max_line_bytes),
            position_file=Path(self._config.agent.state_dir) / "log-positions.json")
        self._tailer.start(self._scheduler, logs.poll_interval)

    def lag_bytes(self) -> int:
        """Bytes of the tailed files not yet accepted by every publisher; 0 when no file is tailed."""
        return self._tailer.lag_bytes() if self._tailer is not None else 0

    def close_logs(self) -> None:
        """Stops tailing and saves the positions; the sink's last deliveries still update them."""
        if self._tailer is not None:
            self._tailer.close()
