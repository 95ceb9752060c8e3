"""``pca --version``: pca-core, the plugin API, every installed plugin distribution and the key libraries.

Everything comes from installed distributions' metadata: no plugin and no client library is imported.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from pca_core._version import __version__
from pca_core.api.plugin import PLUGIN_API_VERSION
from pca_core.runtime import discovery

LIBRARIES: Final = ("stevedore", "msgspec", "paho-mqtt", "python-qpid-proton", "kafka-python", "dulwich",
                    "thrift", "fluent-logger", "msgpack", "prometheus-client")
"""The libraries whose versions an operator reporting a problem is asked for; those installed are shown."""


@dataclass(slots=True)
class PluginDistribution:
    """A distribution that registers plugins, and what it registers (``transport mqtt``)."""

    name: str
    version: str
    plugins: list[str] = field(default_factory=list)


def plugin_api() -> str:
    """The plugin API version this pca-core provides, as ``major.minor``."""
    return ".".join(map(str, PLUGIN_API_VERSION))


def plugin_distributions() -> list[PluginDistribution]:
    """Every installed distribution that registers a plugin in one of pca's entry point groups, by name."""
    found: dict[tuple[str, str], PluginDistribution] = {}
    for group, (_base, kind) in discovery.GROUPS.items():
        for entry in importlib.metadata.entry_points(group=group):
            owner = entry.dist
            dist_name, version = (owner.name, owner.version) if owner is not None else ("unknown", "?")
            dist = found.setdefault((dist_name, version), PluginDistribution(dist_name, version))
            dist.plugins.append(f"{kind} {entry.name}")
    return sorted(found.values(), key=lambda dist: (dist.name.lower(), dist.version))


def library_versions(names: Iterable[str] = LIBRARIES) -> list[tuple[str, str]]:
    """(name, version) of each of ``names`` that is installed, in the order given."""
    versions = []
    for name in names:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def report() -> str:
    """What ``pca --version`` prints; its first line is ``pca <pca-core version>``."""
    lines = [f"pca {__version__}", f"plugin API {plugin_api()}",
             f"Python {platform.python_version()} ({platform.python_implementation()})", "plugins:"]
    dists = plugin_distributions()
    width = max((len(f"{d.name} {d.version}") for d in dists), default=0)
    lines += [f"  {f'{d.name} {d.version}':<{width}}  {', '.join(d.plugins)}" for d in dists] or ["  none"]
    lines.append("libraries:")
    lines += [f"  {name} {version}" for name, version in library_versions()] or ["  none"]
    return "\n".join(lines)
