"""The configuration's shape: every section and key, its type and its default."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

import msgspec

from pca_core.api.plugin import ConfigIssue
from pca_core.api.settings import (
    ArtifactsConfig,
    PluginChoice,
    PublisherConfig,
    Section,
    TlsConfig,
    TransportConfig,
)
from pca_core.stratos.payload import Identity, identity_from_params

__all__ = [
    "AgentConfig",
    "ArtifactsConfig",
    "Config",
    "HealthConfig",
    "HttpConfig",
    "LogsConfig",
    "MultilineConfig",
    "PluginChoice",
    "PublisherConfig",
    "TlsConfig",
    "TransportConfig",
]


class HealthConfig(Section):
    """Health statistics sampling."""

    enabled: bool = True
    interval: float = 15.0


class MultilineConfig(Section):
    """Records that span several lines (``[logs.multiline]``), such as a stack trace under its log line.

    Attributes:
        first_line: a regular expression that matches, at its start, the first line of a record; the
            lines after it that do not match belong to it. None: one record per line.
        flush_timeout: seconds the last record waits for more lines before it is sent as it is.
    """

    first_line: str | None = None
    flush_timeout: float = 1.0

    def issues(self) -> Iterator[ConfigIssue]:
        """A pattern that does not compile, or a timeout that cannot work."""
        if self.first_line is not None:
            try:
                re.compile(self.first_line.encode())
            except re.error as exc:
                yield ConfigIssue("first_line", f"a regular expression ({exc})")
        if not self.flush_timeout > 0:
            yield ConfigIssue("flush_timeout", f"seconds, more than 0; got {self.flush_timeout}")


class LogsConfig(Section):
    """Log files to tail and ship to the publishers of stream ``logs``.

    Attributes:
        enabled: tail the files.
        paths: the files, or glob patterns.
        poll_interval: seconds between two looks at the files when they are quiet; while lines are
            waiting the tailer reads on as soon as the publishers took the last ones.
        max_line_bytes: the longest record, in bytes; a longer line is cut into pieces of this size.
        max_buffered_bytes: the most bytes of lines read and not yet delivered; beyond it reading pauses
            and the lines wait in their files.
        positions_interval: seconds between two writes of the position file at least; a crash reads the
            lines delivered since the last write again.
        multiline: records that span several lines.
    """

    enabled: bool = False
    paths: tuple[str, ...] = ()
    poll_interval: float = 0.25
    max_line_bytes: Annotated[int, msgspec.Meta(ge=1)] = 65536
    max_buffered_bytes: Annotated[int, msgspec.Meta(ge=1)] = 8 * 1024 * 1024
    positions_interval: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    multiline: MultilineConfig = MultilineConfig()

    def issues(self) -> Iterator[ConfigIssue]:
        """A poll interval that cannot work, and the multiline section's issues."""
        if not self.poll_interval > 0:
            yield ConfigIssue("poll_interval", f"seconds, more than 0; got {self.poll_interval}")
        for issue in self.multiline.issues():
            yield ConfigIssue(f"multiline.{issue.key}", issue.expected)


class HttpConfig(Section):
    """The operator's HTTP endpoint (``[http]``): ``/metrics``, ``/healthz`` and ``/readyz``.

    Attributes:
        listen: ``host:port`` to serve on, e.g. ``127.0.0.1:9466``; None (the default) serves nothing.
            The endpoint has no authentication: keep it on a loopback or otherwise private address.
    """

    listen: str | None = None

    def address(self) -> tuple[str, int] | None:
        """(host, port) of ``listen``; None when unset.

        Raises:
            ValueError: ``listen`` is not ``host:port`` with a port from 1 to 65535.
        """
        if self.listen is None:
            return None
        host, colon, port = self.listen.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"host:port with a port from 1 to 65535, such as 127.0.0.1:9466; got "
                             f"{self.listen!r}")
        return host, int(port)

    def issues(self) -> Iterator[ConfigIssue]:
        """A ``listen`` that is not ``host:port``."""
        try:
            self.address()
        except ValueError as exc:
            yield ConfigIssue("listen", str(exc))


class AgentConfig(Section):
    """The agent's own behaviour."""

    listen_address: str = "localhost"
    port_check_timeout: float = 600.0
    application_path: str | None = None
    lb_private_ip: str | None = None
    lb_public_ip: str | None = None
    metadata_service_url: str | None = None
    extensions_dir: str | None = None
    payload_file: str | None = None
    state_dir: str = "/var/lib/pca"
    topology_request_interval: float = 30.0
    shutdown_timeout: float = 10.0
    dispatch_queue_size: int = 10_000
    dispatch_queue_bytes: Annotated[int, msgspec.Meta(ge=1)] = 64 * 1024 * 1024  # bytes queued at most
    workers: int = 4

    def issues(self) -> Iterator[ConfigIssue]:
        """An interval that cannot work."""
        if not self.topology_request_interval > 0:
            yield ConfigIssue("topology_request_interval",
                              f"a number of seconds greater than 0, not {self.topology_request_interval}")


class Config(Section):
    """The whole effective configuration. ``payload`` holds the launch parameters as strings."""

    agent: AgentConfig = AgentConfig()
    transport: TransportConfig = TransportConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    health: HealthConfig = HealthConfig()
    logs: LogsConfig = LogsConfig()
    http: HttpConfig = HttpConfig()
    publishers: tuple[PublisherConfig, ...] = ()
    event_handlers: tuple[PluginChoice, ...] = ()
    payload: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def identity(self) -> Identity:
        """The instance's identity, read from the payload (validated when the configuration loaded)."""
        return identity_from_params(self.payload, "payload")
