"""The core's settings a plugin receives: its section of the configuration, already validated."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import msgspec

from pca_core.api.backoff import Backoff
from pca_core.api.plugin import ConfigIssue
from pca_core.api.secrets import Secret


class Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every configuration section: unknown keys are errors, values never change once loaded."""

    def issues(self) -> Iterable[ConfigIssue]:
        """What types alone cannot say about the section's own keys (ranges, orders); none by default.

        ``pca config check`` and ``pca run`` report them before the plugin's own ``check_config``.
        """
        return ()


class TlsConfig(Section):
    """TLS for a connection; certificates and host names are verified unless ``verify`` is false.

    Attributes:
        ca_file: the CA certificates to trust; None means the system's.
        cert_file: a client certificate, for brokers that ask for one.
        key_file: the client certificate's private key.
        verify: whether to check the peer's certificate and name.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class PluginChoice(Section):
    """A plugin chosen by name, with its own options table (validated against the plugin's ``Options``)."""

    plugin: str
    options: dict[str, Any] = {}


class TransportConfig(Section):
    """The broker connection: ``[transport]``.

    Attributes:
        plugin: the transport's entry point name.
        urls: the brokers, in failover order; their form is the plugin's (``host:port`` or a URL).
        username: the user to authenticate as, if the broker wants one.
        password: its password.
        client_id: the client's identity at the broker; the agent sets ``pca-<member id>`` when unset.
        qos: 1 for at-least-once publishing and delivery, 0 for at most once.
        connect_timeout: seconds one connection attempt may take.
        publish_timeout: seconds a QoS 1 publish waits for the broker's acceptance.
        reconnect_delay: seconds before the first retry after a connection was lost or refused.
        max_reconnect_delay: the longest wait between two retries; see :meth:`backoff`.
        max_message_size: the largest message body received, in bytes. The core drops (and acknowledges)
            a bigger one before it is queued; a plugin whose client allows it refuses such messages
            before buffering them.
        tls: TLS settings; None means the plugin's default for the URL form.
        options: the plugin's own options table.
    """

    plugin: str = "mqtt"
    urls: tuple[str, ...] = ()
    username: str | None = None
    password: Secret | None = None
    client_id: str | None = None
    qos: Literal[0, 1] = 1
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    reconnect_delay: float = 2.0
    max_reconnect_delay: float = 60.0
    max_message_size: int = 16 * 1024 * 1024
    tls: TlsConfig | None = None
    options: dict[str, Any] = {}

    def backoff(self) -> Backoff:
        """A new reconnect schedule: from ``reconnect_delay`` doubling up to ``max_reconnect_delay``."""
        return Backoff(self.reconnect_delay, self.max_reconnect_delay)

    def issues(self) -> Iterator[ConfigIssue]:
        """Timeouts, reconnect delays and a maximum message size that cannot work."""
        for key in ("connect_timeout", "publish_timeout"):
            if not getattr(self, key) > 0:
                yield ConfigIssue(key, f"a number of seconds greater than 0, not {getattr(self, key)}")
        if not self.reconnect_delay > 0:
            yield ConfigIssue("reconnect_delay",
                              f"a number of seconds greater than 0, not {self.reconnect_delay}")
        elif not self.max_reconnect_delay >= self.reconnect_delay:
            yield ConfigIssue("max_reconnect_delay",
                              f"a number of seconds not below reconnect_delay ({self.reconnect_delay}), "
                              f"not {self.max_reconnect_delay}")
        if self.max_message_size < 1:
            yield ConfigIssue("max_message_size",
                              f"a number of bytes, more than 0; got {self.max_message_size}")


class PublisherConfig(PluginChoice):
    """A log publisher (``[[publishers]]``), the record streams it receives, and how they are batched.

    Attributes:
        streams: the record streams it receives: ``logs`` (lines of the tailed files) and ``health``.
        batch_size: records per ``publish`` call at most.
        flush_interval: seconds between deliveries of what was buffered.
        max_buffered: records held for it at most while it cannot deliver; then the oldest are dropped.
        publish_timeout: seconds one ``publish`` call may take.
    """

    streams: tuple[str, ...] = ("logs", "health")
    batch_size: int = 500
    flush_interval: float = 1.0
    max_buffered: int = 10_000
    publish_timeout: float = 10.0

    def issues(self) -> Iterator[ConfigIssue]:
        """Batching settings the record sink cannot work with."""
        if self.batch_size < 1:
            yield ConfigIssue("batch_size", f"a whole number of records, at least 1; got {self.batch_size}")
        if self.max_buffered < 1:
            yield ConfigIssue("max_buffered",
                              f"a whole number of records, at least 1; got {self.max_buffered}")
        if not self.flush_interval > 0:
            yield ConfigIssue("flush_interval", f"seconds, more than 0; got {self.flush_interval}")
        if not self.publish_timeout > 0:
            yield ConfigIssue("publish_timeout", f"seconds, more than 0; got {self.publish_timeout}")


class ArtifactsConfig(Section):
    """Artifact checkout and the periodic update task: ``[artifacts]``.

    Attributes:
        plugin: the artifact repository's entry point name.
        branch: the branch to follow; None means the remote's default branch.
        enable_update: run the periodic update task.
        auto_checkout: the task pulls new revisions.
        auto_commit: the task commits and pushes local changes.
        update_interval: seconds between two runs of the task.
        clone_retries: how often a failed first checkout is retried.
        clone_interval: seconds between two attempts at the first checkout.
        initial_backup: keep a copy of the application path before the first checkout.
        super_tenant_repository_path: where the super tenant's artifacts go on a multi-tenant cartridge.
        tenant_repository_path: where other tenants' artifacts go, under ``<path>/<tenant id>``.
        options: the plugin's own options table.
    """

    plugin: str = "git"
    branch: str | None = None
    enable_update: bool = True
    auto_checkout: bool = False
    auto_commit: bool = False
    update_interval: float = 10.0
    clone_retries: int = 5
    clone_interval: float = 10.0
    initial_backup: bool = False
    super_tenant_repository_path: str = "/repository/deployment/server/"
    tenant_repository_path: str = "/repository/tenants/"
    options: dict[str, Any] = {}
