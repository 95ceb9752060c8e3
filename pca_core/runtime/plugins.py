"""The plugins a configuration selects: found by name, their options validated, their own checks run.

``pca config check`` and ``pca run`` both go through :func:`select`, so a configuration that one accepts
the other accepts too, and both report every problem at once.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from pca_core.api.errors import ConfigError, ConfigErrors, PluginError
from pca_core.api.plugin import Plugin
from pca_core.api.settings import PluginChoice, TransportConfig
from pca_core.config.native import origin_of
from pca_core.config.schema import Config
from pca_core.config.validate import convert
from pca_core.runtime import discovery


@dataclass(frozen=True, slots=True)
class Selected:
    """A plugin the configuration selects, ready to be built as ``cls(config, options)``.

    Attributes:
        group: its entry point group.
        key: where it is chosen in the configuration: ``transport``, ``publishers[0]``, ``artifacts``.
        cls: the plugin class, loaded and checked.
        config: its section of the configuration.
        options: its options, validated against ``cls.Options``.
    """

    group: str
    key: str
    cls: type[Plugin]
    config: Any
    options: Any


def effective_transport(config: Config) -> TransportConfig:
    """The transport section as the agent uses it: ``client_id`` defaults to ``pca-<member id>``.

    A stable client id lets a broker resume the agent's session (where the plugin offers one).
    """
    transport = config.transport
    member_id = config.payload.get("MEMBER_ID")
    if transport.client_id is None and member_id:
        return msgspec.structs.replace(transport, client_id=f"pca-{member_id}")
    return transport


def sections(config: Config) -> Iterator[tuple[str, str, PluginChoice | Any]]:
    """Yields (group, key, section) for every plugin the configuration selects.

    The artifact repository is selected only when the payload names a repository (``REPO_URL``).
    """
    yield discovery.TRANSPORTS, "transport", effective_transport(config)
    for i, publisher in enumerate(config.publishers):
        yield discovery.LOG_PUBLISHERS, f"publishers[{i}]", publisher
    if config.payload.get("REPO_URL"):
        yield discovery.ARTIFACT_REPOS, "artifacts", config.artifacts
    for i, handler in enumerate(config.event_handlers):
        yield discovery.EVENT_HANDLERS, f"event_handlers[{i}]", handler


def select(config: Config, source: str, environ: Mapping[str, str] | None = None, *,
           groups: Collection[str] | None = None) -> list[Selected]:
    """Loads every selected plugin class, validates its options and runs its :meth:`Plugin.check_config`.

    Args:
        config: the loaded configuration.
        source: the configuration file, named in every error.
        environ: the environment the configuration was loaded with (to name a variable that set a value).
        groups: only the plugins of these entry point groups; all by default.

    Raises:
        ConfigErrors: every problem: a plugin that is not installed or does not load, an invalid option,
            and whatever each plugin's own check found, each with the file (or variable) and the key.
    """
    environ = os.environ if environ is None else environ
    selected: list[Selected] = []
    errors: list[ConfigError] = []
    for group, key, section in sections(config):
        if groups is not None and group not in groups:
            continue
        try:
            cls = discovery.load_plugin(group, section.plugin)
        except PluginError as exc:
            errors.append(ConfigError(origin_of(f"{key}.plugin", source, environ), f"{key}.plugin", str(exc)))
            continue
        try:
            options = prepare(cls, section, source=source, key=key, environ=environ)
        except ConfigErrors as exc:
            errors += exc.errors
            continue
        selected.append(Selected(group, key, cls, section, options))
    if errors:
        raise ConfigErrors(errors)
    return selected


def prepare(cls: type[Plugin], section: Any, *, source: str, key: str,
            environ: Mapping[str, str] | None = None) -> Any:
    """Validates ``section.options`` against ``cls.Options``, then runs the core's and the plugin's checks.

    The section's own keys are checked first (:meth:`pca_core.api.settings.Section.issues`: timeouts,
    reconnect delays, batching), then ``cls.check_config`` runs.

    Args:
        cls: the plugin class.
        section: its section of the configuration (it has ``options``, a table).
        source: the configuration file.
        key: where the section is in the file: ``transport``, ``publishers[0]``.
        environ: the environment the configuration was loaded with.

    Returns:
        The options, an instance of ``cls.Options``, for ``cls(section, options)``.

    Raises:
        ConfigErrors: every invalid option and every problem the checks found.
    """
    environ = os.environ if environ is None else environ
    try:
        options = convert(dict(section.options), cls.Options, source=source, prefix=f"{key}.options")
    except ConfigErrors as exc:  # an option an environment override set names the variable
        raise ConfigErrors([ConfigError(origin_of(e.key, e.source, environ), e.key, e.expected)
                            for e in exc.errors]) from None
    errors = []
    for issue in (*section.issues(), *cls.check_config(section, options)):
        full = f"{key}.{issue.key}" if issue.key else key
        errors.append(ConfigError(origin_of(full, source, environ), full, issue.expected))
    if errors:
        raise ConfigErrors(errors)
    return options
