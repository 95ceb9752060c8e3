"""``pca plugins``: every installed plugin and whether it loads; with ``--config``, those a file selects."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from pca_core._version import __version__
from pca_core.api.errors import PluginError
from pca_core.cli.versions import plugin_api
from pca_core.config.schema import Config
from pca_core.runtime import discovery
from pca_core.runtime.plugins import sections


@dataclass(frozen=True, slots=True)
class Selection:
    """A plugin a configuration selects, and why it does not load (None when it does).

    Attributes:
        key: where the configuration selects it: ``transport``, ``publishers[0]``, ``artifacts``.
        group: its entry point group.
        name: the name the configuration gives.
        error: what loading it said, with the install hint for a plugin this project ships.
    """

    key: str
    group: str
    name: str
    error: str | None


def selections(config: Config) -> list[Selection]:
    """Every plugin ``config`` selects (as ``pca run`` would load them), each loaded to tell if it works."""
    found = []
    for group, key, section in sections(config):
        try:
            discovery.load_plugin(group, section.plugin)
            error = None
        except PluginError as exc:
            error = str(exc)
        found.append(Selection(key, group, section.plugin, error))
    return found


def plugins_command(*, as_json: bool, config: Config | None = None, source: str | None = None) -> int:
    """Prints the installed plugins, then those ``config`` selects; returns the exit code.

    Args:
        as_json: print one JSON document instead of text.
        config: a loaded configuration whose selected plugins must load.
        source: the configuration's file, for the messages.

    Returns:
        0, or 1 when a plugin ``config`` selects is not installed or does not load.
    """
    rows = discovery.list_plugins()
    chosen = selections(config) if config is not None else None
    if as_json:
        document: dict[str, Any] = {
            "pca_core": __version__, "plugin_api": plugin_api(),
            "plugins": [{"group": row.group, "name": row.name, "distribution": row.distribution,
                         "version": row.version, "loads": row.error is None, "error": row.error}
                        for row in rows]}
        if chosen is not None:
            document["config"] = source
            document["selected"] = [{"key": s.key, "group": s.group, "name": s.name, "loads": s.error is None,
                                     "error": s.error} for s in chosen]
        print(json.dumps(document, indent=2))
    else:
        for row in rows:
            status = "ok" if row.error is None else f"error: {row.error}"
            print(f"{row.group:<20} {row.name:<10} {row.distribution} {row.version}  {status}")
        if chosen is not None:
            print(f"selected by {source}:")
            for s in chosen:
                print(f"  {s.key:<18} {s.name:<10} {'ok' if s.error is None else f'error: {s.error}'}")
    failed = [s for s in chosen or () if s.error is not None]
    if failed:
        names = ", ".join(f"{s.key} ({s.name})" for s in failed)
        print(f"pca: error: {source}: {len(failed)} selected plugin{'s' if len(failed) > 1 else ''} "
              f"cannot be loaded: {names}", file=sys.stderr)
        return 1
    return 0
