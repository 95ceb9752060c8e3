"""What every plugin class declares: its API version, its capabilities and its options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from pca_core.api.errors import ConfigError

PLUGIN_API_VERSION: Final = (1, 0)
"""The plugin API this pca-core provides, as (major, minor).

A plugin written for another major version, or for a newer minor version, is refused at load time.
"""


class PluginOptions(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of a plugin's options table.

    A plugin declares its options as a subclass with typed fields and defaults; pca validates the
    ``options`` table of the plugin's section against it, so an unknown key or a wrong type is reported with
    the file and the key. Fields typed :class:`pca_core.Secret` are masked wherever configuration is shown.
    """


class Plugin:
    """Class attributes shared by every kind of plugin.

    Attributes:
        api_version: the plugin API version the plugin was written for.
        capabilities: optional features the plugin offers (e.g. ``"qos1"``, ``"tls"``, ``"wildcards"``); a
            conformance suite skips only what a plugin does not declare.
        Options: the plugin's options type.
    """

    api_version: ClassVar[tuple[int, int]] = PLUGIN_API_VERSION
    capabilities: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    @classmethod
    def check_options(cls, options: Any) -> None:
        """Checks what types alone cannot say (ranges, combinations of options).

        Raises:
            ValueError: with a message naming the option and what was expected.
        """


def parse_options(plugin: type[Plugin], raw: Mapping[str, Any], *, source: str, key: str) -> Any:
    """Validates a plugin's options table against its :attr:`Plugin.Options`, then its own checks.

    Args:
        plugin: the plugin class.
        raw: the options table as read from the configuration.
        source: the configuration file.
        key: the dotted key of the table, e.g. ``transport.options``.

    Raises:
        ConfigError: naming the file, the option and what was expected.
    """
    from pca_core.config import convert

    options = convert(dict(raw), plugin.Options, source=source, prefix=key)
    try:
        plugin.check_options(options)
    except ValueError as exc:
        raise ConfigError(source, key, str(exc)) from None
    return options
