"""``pca config init``: a commented starter configuration, or a legacy agent.conf converted to native TOML.

The starter runs as it is against ``pca simulate``: the ``mqtt`` transport on a Mosquitto at
127.0.0.1:1883 and a payload for a demo member. The conversion reuses the legacy reader
(:mod:`pca_core.config.legacy`), so the TOML it writes loads to the configuration the agent.conf loads to;
what has no native equivalent is said on standard error.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Final

import msgspec

from pca_core._version import __version__
from pca_core.api.errors import ConfigError, PluginError
from pca_core.api.plugin import PluginOptions
from pca_core.cli.toml_doc import render
from pca_core.config import Config, build
from pca_core.runtime import discovery

_log = logging.getLogger("pca.cli")

STARTER_URL: Final = "mqtt://127.0.0.1:1883"
"""The broker the starter configuration names: a Mosquitto on this host, as ``pca simulate`` reaches it."""

DEMO_PAYLOAD: Final = {
    "APPLICATION_ID": "demo-app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.demo.domain",
    "CLUSTER_INSTANCE_ID": "php-1", "MEMBER_ID": "php.member-1", "INSTANCE_ID": "instance-1",
    "NETWORK_PARTITION_ID": "network-partition-1", "PARTITION_ID": "partition-1", "PORTS": "8080",
    "MULTITENANT": "false", "TENANT_ID": "-1234",
}
"""The starter's member: the one ``pca demo`` plays, listening on 8080."""

# agent.conf keys the native form has no key for, and why they can be left out.
NO_EQUIVALENT: Final = {
    "mb.publisher.timeout": "pca never drops a status event (it waits in the outbox until the broker "
                            "accepts it)",
    "monitoring.server.port": "the logs publisher sends to monitoring.server.secure.port",
    "param.file.path": "the payload file is written as agent.payload_file, where the original looked",
    "plugins.dir": "Python event handlers are installed distributions ([[event_handlers]])",
    "extensions.dir": "the extensions directory is written as agent.extensions_dir, where the original "
                      "looked",
}

_STARTER_HEADER = f"""\
# pca configuration (native TOML), written by `pca config init` (pca {__version__}).
#
# As it is, it runs against `pca simulate` over a Mosquitto on 127.0.0.1:1883:
#   pca simulate --config FILE    plays the Stratos control plane for the member of [payload]
#   pca run --config FILE         the agent; it activates once port 8080 accepts connections
#                                 (it keeps its state in agent.state_dir, /var/lib/pca)
# Every key is shown: a commented line holds its default (or an example); remove the "#" to change it.
# A string may refer to the environment, "${{VAR}}" or "${{VAR:-default}}", or to a file, "${{file:/path}}"
# ("$${{" stands for "${{"); PCA_<SECTION>__<KEY> variables override any key (docs/configuration.md).
# Check it with: pca config check --config FILE [--connect]
"""


def options_of(section: str, plugin: str) -> type[PluginOptions] | None:
    """The options type of the plugin ``section`` names, or None when it is not installed or does not load."""
    group = {"transport": discovery.TRANSPORTS, "artifacts": discovery.ARTIFACT_REPOS,
             "publishers": discovery.LOG_PUBLISHERS, "event_handlers": discovery.EVENT_HANDLERS}.get(section)
    if group is None or not plugin:
        return None
    try:
        return discovery.load_plugin(group, plugin).Options
    except PluginError:
        return None


def starter_config() -> Config:
    """The starter configuration: ``mqtt`` on 127.0.0.1:1883 and the demo member."""
    tree = {"transport": {"plugin": "mqtt", "urls": [STARTER_URL]}, "payload": dict(DEMO_PAYLOAD)}
    return build(tree, source="(starter configuration)", environ={})


def starter_text() -> str:
    """The starter configuration as commented TOML."""
    if "mqtt" not in discovery.installed_names(discovery.TRANSPORTS):
        _log.warning("the mqtt transport is not installed: pip install pca-mqtt (or choose another "
                     "transport.plugin) before pca run or pca simulate")
    lines, _secrets = render(starter_config(), active={"transport.plugin", "transport.urls"},
                             options_of=options_of,
                             payload_note="The demo member `pca simulate` plays the control plane for.")
    return _STARTER_HEADER + "\n" + "\n".join(lines) + "\n"


def legacy_text(conf_path: Path, payload_path: Path | None = None) -> tuple[str, list[str]]:
    """A legacy agent.conf (and its payload) as native TOML, and the warnings to show.

    The environment's ``PCA_`` variables are not applied: they apply to the native file when it loads.

    Raises:
        ConfigError: the file cannot be read; ConfigErrors: it is not valid, as ``pca run`` would say.
    """
    from pca_core.config.legacy import PAYLOAD_KEYS, load_legacy, read_agent_conf

    config, warnings = load_legacy(conf_path, payload_path, {})
    conf = read_agent_conf(conf_path)
    payload_path = Path(config.agent.payload_file) if config.agent.payload_file else None
    warnings += [f"{conf_path}: {key}: no native equivalent, left out: {why}"
                 for key, why in NO_EQUIVALENT.items() if key in conf]
    # The payload file stays where it is (the instance's launch parameters are written there); agent.conf
    # may hold payload keys too, and those go into [payload].
    from_conf = {key for key in PAYLOAD_KEYS if key.lower() in conf and key in config.payload}
    agent = config.agent
    if payload_path is not None and payload_path.exists():
        from pca_core.config.native import read_payload_file

        in_file = read_payload_file(payload_path)
        for key in sorted(from_conf):
            if key in in_file and in_file[key] != config.payload[key]:
                warnings.append(f"{conf_path}: {key}: agent.conf's value wins over the payload file's in the "
                                f"legacy form, the payload file's in the native one; check [payload]")
        payload = {key: value for key, value in config.payload.items() if key in from_conf}
        note = f"Besides these, from agent.payload_file: {payload_path}."
    else:
        agent = msgspec.structs.replace(agent, payload_file=None)
        payload = dict(config.payload)
        note = None
        if payload_path is not None:
            warnings.append(f"{payload_path}: no such payload file; agent.payload_file is left out: set it, "
                            f"or give the launch parameters in [payload]")
    native = msgspec.structs.replace(config, agent=agent, payload=payload)
    lines, secrets = render(native, active={"transport.plugin", "transport.urls"}, options_of=options_of,
                            examples=False, payload_note=note)
    if secrets:
        warnings.append(f"the configuration holds the secrets of {conf_path} as they are "
                        f"({', '.join(secrets)}): keep the file private, or refer to the environment or a "
                        f"file instead (${{VAR}}, ${{file:/path}})")
    header = (f"# pca configuration (native TOML), converted from {conf_path.resolve()} by\n"
              f"# `pca config init --legacy` (pca {__version__}): it means what that file and its payload "
              f"meant.\n"
              f"# Every key is shown: a commented line holds its default; remove the \"#\" to change it.\n"
              f"# Check it with: pca config check --config FILE [--connect]\n")
    return header + "\n" + "\n".join(lines) + "\n", warnings


def write(text: str, output: str | None, *, force: bool) -> None:
    """Writes ``text`` to ``output`` (mode 0600: it may hold secrets), or to standard output when None.

    Raises:
        ConfigError: ``output`` exists and ``force`` is false, or it cannot be written.
    """
    if output is None:
        sys.stdout.write(text)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(output, flags, 0o600)
    except FileExistsError:
        raise ConfigError(output, "(file)", "exists already; --force overwrites it") from None
    except OSError as exc:
        raise ConfigError(output, "(file)", f"cannot be written: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def init_command(*, legacy: str | None, payload: str | None, output: str | None, force: bool) -> int:
    """Runs ``pca config init``; returns the exit code."""
    if legacy is None:
        text = starter_text()
    else:
        text, warnings = legacy_text(Path(legacy), Path(payload) if payload else None)
        for warning in warnings:
            _log.warning("%s", warning)
    write(text, output, force=force)
    if output is not None:
        _log.info("%s written", output)
    return 0
