"""Building a plugin in a test exactly as the agent does, through its checks."""

from __future__ import annotations

from typing import Any, TypeVar

from pca_core.api.plugin import Plugin
from pca_core.runtime.plugins import prepare

__all__ = ["build_plugin"]

_P = TypeVar("_P", bound=Plugin)


def build_plugin(cls: type[_P], config: Any, *, key: str = "plugin",
                 source: str = "test configuration") -> _P:
    """Validates ``config.options`` against ``cls.Options``, runs ``cls.check_config``, then builds it.

    Args:
        cls: the plugin class.
        config: its section: a :class:`~pca_core.api.TransportConfig`, a
            :class:`~pca_core.api.PublisherConfig`, an :class:`~pca_core.api.ArtifactsConfig` or a
            :class:`~pca_core.api.PluginChoice`, with the options as a plain table.
        key: the section's key in errors (``transport``, ``publishers[0]``).
        source: the file named in errors.

    Raises:
        ConfigErrors: what ``pca config check`` would report for this section.
    """
    options = prepare(cls, config, source=source, key=key, environ={})
    return cls(config, options)
