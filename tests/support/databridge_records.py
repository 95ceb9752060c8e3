"""What a databridge receiver got, read back as the core's records: the Stratos streams undone.

For the log publisher conformance suite and the end-to-end tests, which compare what arrived with what
the core emitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pca_core.api import LogRecord
from pca_core.testing import LogReceiver
from tests.support.databridge import DatabridgeReceiver, ReceivedEvent

HEALTH_IDS = ("cluster_id", "cluster_instance_id", "network_partition_id", "member_id", "partition_id")


def core_record(event: ReceivedEvent) -> LogRecord | None:
    """The core record ``event`` was made from; None for an event of another stream."""
    timestamp = event.timestamp / 1000
    if event.stream_id == "cartridge_agent_health_stats:1.0.0":
        payload = event.payload
        fields = {"name": payload["health_description"], "value": payload["value"],
                  **{key: payload[key] for key in HEALTH_IDS}}
        return LogRecord("health", timestamp, fields)
    if event.stream_id.startswith("logs."):
        fields = {"line": event.payload["message"], "path": event.payload["logger"],
                  "member_id": event.meta["memberId"], "cluster_id": event.payload["serverName"]}
        return LogRecord("logs", timestamp, fields)
    return None


class DatabridgeLogReceiver(LogReceiver):
    """A :class:`DatabridgeReceiver` as the log publisher conformance suite sees it.

    Args:
        receiver: the databridge receiver, started.
        ca_file: the CA that signed its certificate.
    """

    def __init__(self, receiver: DatabridgeReceiver, ca_file: str) -> None:
        self.databridge = receiver
        self.options: Mapping[str, Any] = {"urls": [receiver.url], "username": "admin", "password": "admin",
                                           "ca_file": ca_file}

    def records(self) -> list[LogRecord]:
        return [r for r in map(core_record, self.databridge.events) if r is not None]

    def start(self) -> None:
        self.databridge.start()

    def stop(self) -> None:
        self.databridge.stop()
