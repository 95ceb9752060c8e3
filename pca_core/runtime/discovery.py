"""Finding plugins through entry points, by name first: an unselected plugin is never imported."""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Any, Final

from pca_core.api.artifact_repo import ArtifactRepo
from pca_core.api.errors import PluginAPIMismatch, PluginError, PluginLoadError, PluginNotFound
from pca_core.api.event_handler import EventHandler
from pca_core.api.log_publisher import LogPublisher
from pca_core.api.plugin import Plugin, api_mismatch, capability_problem
from pca_core.api.transport import Transport

_log = logging.getLogger(__name__)

TRANSPORTS: Final = "pca.transports"
ARTIFACT_REPOS: Final = "pca.artifact_repos"
LOG_PUBLISHERS: Final = "pca.log_publishers"
EVENT_HANDLERS: Final = "pca.event_handlers"

GROUPS: Final[dict[str, tuple[type[Plugin], str]]] = {
    TRANSPORTS: (Transport, "transport"),
    ARTIFACT_REPOS: (ArtifactRepo, "artifact repository"),
    LOG_PUBLISHERS: (LogPublisher, "log publisher"),
    EVENT_HANDLERS: (EventHandler, "event handler"),
}

# Plugins this project ships as separate distributions, for the install hint.
SHIPPED: Final[dict[tuple[str, str], str]] = {
    (TRANSPORTS, "mqtt"): "pca-mqtt",
    (TRANSPORTS, "amqp"): "pca-amqp",
    (TRANSPORTS, "kafka"): "pca-kafka",
    (ARTIFACT_REPOS, "git"): "pca-git",
    (LOG_PUBLISHERS, "fluentd"): "pca-fluentd",
    (LOG_PUBLISHERS, "thrift"): "pca-thrift",
}


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """An installed plugin as ``pca plugins`` shows it; ``error`` is None when it loads."""

    group: str
    name: str
    distribution: str
    version: str
    error: str | None


def installed_names(group: str) -> list[str]:
    """The names registered in ``group``, without importing any plugin."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def distribution_of(group: str, name: str) -> tuple[str, str]:
    """The (distribution, version) that registers ``name`` in ``group``; ("unknown", "?") if not found."""
    for ep in importlib.metadata.entry_points(group=group, name=name):
        if ep.dist is not None:
            return ep.dist.name, ep.dist.version
    return "unknown", "?"


def load_plugin(group: str, name: str) -> type[Plugin]:
    """Imports the plugin class registered as ``name`` in ``group`` and checks it can be used.

    Only this one entry point is imported.

    Raises:
        PluginNotFound: nothing registers ``name``; the message lists what is installed and, for a plugin
            this project ships, the distribution to install.
        PluginLoadError: the import failed, two distributions register the name, or the object is not a
            plugin of the group's kind; the message names the distribution, its version and the cause.
        PluginAPIMismatch: the plugin was written for another plugin API version.
    """
    from stevedore import driver, exception

    base, kind = GROUPS[group]

    def failed(_manager: Any, ep: importlib.metadata.EntryPoint, err: BaseException) -> None:
        dist, version = distribution_of(group, ep.name)
        raise PluginLoadError(name, f"{kind} plugin {name!r} ({dist} {version}) failed to load: "
                                    f"{type(err).__name__}: {err}", group=group) from err

    try:
        manager = driver.DriverManager(group, name, on_load_failure_callback=failed,
                                       on_missing_entrypoints_callback=lambda _names: None)
    except exception.NoMatches:
        raise _not_found(group, name, kind) from None
    except exception.MultipleMatches as exc:
        raise PluginLoadError(name, f"{kind} plugin {name!r} is registered more than once: {exc}",
                              group=group) from None
    plugin = manager.driver
    dist, version = distribution_of(group, name)
    what = f"{kind} plugin {name!r} ({dist} {version})"
    if not (isinstance(plugin, type) and issubclass(plugin, base)):
        raise PluginLoadError(name, f"{what} is not a {base.__module__}.{base.__name__} subclass",
                              group=group)
    mismatch = api_mismatch(plugin)
    if mismatch is not None:
        raise PluginAPIMismatch(name, f"{what} {mismatch}", group=group)
    problem = capability_problem(plugin, base)
    if problem is not None:
        raise PluginLoadError(name, f"{what} {problem}", group=group)
    return plugin


def _not_found(group: str, name: str, kind: str) -> PluginNotFound:
    names = installed_names(group)
    message = f"no {kind} plugin named {name!r} is installed (installed: {', '.join(names) or 'none'})"
    dist = SHIPPED.get((group, name))
    if dist:
        message += f"; install it with: pip install {dist}"
    else:
        message += f"; a plugin registers its name in the entry point group {group!r}"
    return PluginNotFound(name, message, group=group)


def list_plugins() -> list[PluginInfo]:
    """Every installed plugin of every group, each loaded to tell whether it works."""
    rows = []
    for group in GROUPS:
        for name in installed_names(group):
            dist, version = distribution_of(group, name)
            try:
                load_plugin(group, name)
                error = None
            except PluginError as exc:
                error = str(exc)
            rows.append(PluginInfo(group, name, dist, version, error))
    return rows
