"""What every plugin class declares: its API version, its capabilities, its options and its own checks."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import msgspec

PLUGIN_API_VERSION: Final = (2, 0)
"""The plugin API this pca-core provides, as (major, minor).

A plugin written for another major version, or for a newer minor version, is refused at load time.
"""


class Capability(enum.StrEnum):
    """An optional feature a plugin declares in :attr:`Plugin.capabilities`.

    A conformance suite tests what a plugin declares and skips only what it does not; a name that is not
    a member (a typo) is refused when the plugin loads. Each contract accepts the members listed in its
    ``known_capabilities``.
    """

    # Transports
    QOS1 = "qos1"
    """A publish at QoS 1 returns only once the broker accepted the message."""
    WILDCARDS = "wildcards"
    """Subscription patterns with ``+`` and ``#``."""
    TLS = "tls"
    """Connections over TLS, configured by ``[transport.tls]``, certificates verified by default."""
    PERSISTENT_SESSION = "persistent_session"
    """The broker keeps the subscriptions and queues messages while the client is away."""
    CONNECTION_STATE = "connection_state"
    """Lost and restored connections are reported as ``LOST`` and ``RECONNECTED``."""
    REDELIVERY = "redelivery"
    """A message received but not acknowledged is delivered again to the next connection that takes the
    same subscription (the same client id, consumer group or queue)."""
    # Log publishers
    ACK = "ack"
    """``publish`` counts a record as accepted only once the receiver acknowledged it."""
    # Artifact repositories
    PUSH = "push"
    """``commit_and_push`` sends local changes to the remote."""
    CREDENTIALS = "credentials"
    """Remotes that need a user name and password (``RepoSpec.username``/``password``)."""


class PluginOptions(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of a plugin's options table.

    A plugin declares its options as a subclass with typed fields and defaults; pca validates the
    ``options`` table of the plugin's section against it, so an unknown key or a wrong type is reported with
    the file and the key. Fields typed :class:`pca_core.api.Secret` are masked wherever configuration is
    shown.
    """


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """A problem :meth:`Plugin.check_config` found in the plugin's section of the configuration.

    Attributes:
        key: the key within the plugin's section, as the file spells it: ``urls[1]``, ``qos``,
            ``options.keepalive``. The core prefixes the section (``transport.``) and the file name.
        expected: what a valid value looks like, for a person: ``a host:port or mqtt(s):// URL``.
    """

    key: str
    expected: str


class Plugin:
    """Class attributes and hooks shared by every kind of plugin.

    Attributes:
        api_version: the plugin API version the plugin was written for, as (major, minor); every plugin
            class states it (``api_version = (2, 0)``), or it is refused.
        capabilities: the optional features the plugin offers, members of :class:`Capability` that its
            contract knows (``known_capabilities``).
        Options: the plugin's options type.
        known_capabilities: set by each contract: the capabilities a plugin of that kind may declare.
    """

    api_version: ClassVar[tuple[int, int] | None] = None
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    known_capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @classmethod
    def check_config(cls, config: Any, options: Any) -> Iterable[ConfigIssue]:
        """Says what in its section the plugin cannot work with; the default finds nothing.

        Called by both ``pca config check`` and ``pca run``, before the plugin is built, with the options
        already validated against :attr:`Options`: checks what types alone cannot say (URL forms, ranges,
        combinations). Return every problem found, not just the first; the core reports them all, each
        with the file and the full key, and does not build the plugin.

        Args:
            config: the plugin's section (a :class:`~pca_core.api.TransportConfig`,
                :class:`~pca_core.api.PublisherConfig`, :class:`~pca_core.api.ArtifactsConfig` or
                :class:`~pca_core.api.PluginChoice`).
            options: the plugin's options, an instance of :attr:`Options`.
        """
        return ()


def api_mismatch(plugin: type[Plugin]) -> str | None:
    """Why ``plugin`` was written for a plugin API this pca-core does not provide; None when it was not.

    It must be stated, with the same major version and no newer minor one.
    """
    if plugin.api_version is None:
        have = ".".join(map(str, PLUGIN_API_VERSION))
        return (f"does not state the plugin API it was written for; a plugin written for plugin API {have} "
                f"says api_version = {PLUGIN_API_VERSION!r} (plugins for pca-core 0.x, API 1.0, did not)")
    major, minor = plugin.api_version
    if major == PLUGIN_API_VERSION[0] and minor <= PLUGIN_API_VERSION[1]:
        return None
    have = ".".join(map(str, PLUGIN_API_VERSION))
    advice = "a release of the plugin written for it" if major < PLUGIN_API_VERSION[0] else "a newer pca-core"
    return (f"was written for plugin API {major}.{minor}; this pca-core provides plugin API {have}: "
            f"install {advice}")


def capability_problem(plugin: type[Plugin], base: type[Plugin]) -> str | None:
    """Why the capabilities ``plugin`` declares are not ones a plugin of kind ``base`` can have, or None."""
    declared = plugin.capabilities
    known_here = base.known_capabilities
    unknown = sorted(str(c) for c in declared if not isinstance(c, Capability) or c not in known_here)
    if not unknown:
        return None
    known = ", ".join(sorted(base.known_capabilities)) or "none"
    return (f"declares capabilities that are not pca_core.api.Capability members of its kind: "
            f"{', '.join(unknown)} (known: {known})")
