"""The legacy configuration: an unmodified Stratos ``agent.conf`` and its ``payload/launch-params``.

Each value is looked up as the original agent did: in ``agent.conf`` first (section ``[agent]``, keys
case-insensitive), then in the payload (keys case-sensitive); ``""`` and ``null`` mean unset, ``true`` and
``false`` are booleans. The same keys are mandatory and validated the same way, and the result is mapped
onto the native configuration (``docs/configuration.md`` has the table).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pca_core.api.errors import ConfigError
from pca_core.config.native import build, read_payload_file
from pca_core.config.schema import Config
from pca_core.runtime.discovery import LOG_PUBLISHERS, installed_names
from pca_core.stratos.payload import MANDATORY_KEYS, Params, read_identity

# Every key of the original agent.conf (docs: original-agent.md §2.2), plus pca's messaging.transport and
# thrift.tls.* (how a legacy file trusts its databridge receivers' certificates).
AGENT_KEYS = frozenset({
    "mb.urls", "mb.ip", "mb.port", "mb.username", "mb.password", "mb.publisher.timeout",
    "listen.address", "thrift.receiver.urls", "thrift.server.admin.username",
    "thrift.server.admin.password", "cep.stats.publisher.enabled", "stats.notifier.interval",
    "lb.private.ip", "lb.public.ip", "enable.artifact.update", "auto.commit", "auto.checkout",
    "artifact.update.interval", "artifact.clone.retries", "artifact.clone.interval", "port.check.timeout",
    "enable.data.publisher", "monitoring.server.ip", "monitoring.server.port",
    "monitoring.server.secure.port", "monitoring.server.admin.username",
    "monitoring.server.admin.password", "log.file.paths", "application_path", "metadata.service.url",
    "super.tenant.repository.path", "tenant.repository.path", "enable.initial.artifact.backup",
    "param.file.path", "plugins.dir", "extensions.dir", "messaging.transport", "thrift.tls.ca.file",
    "thrift.tls.verify",
})

# Payload parameters the agent reads (§2.3); an agent.conf may hold them too, as the original allowed.
PAYLOAD_KEYS = (*MANDATORY_KEYS, "CLUSTER_INSTANCE_ID", "INSTANCE_ID", "NETWORK_PARTITION_ID",
                "PARTITION_ID", "APPLICATION_PATH", "REPO_URL", "CARTRIDGE_KEY", "COMMIT_ENABLED",
                "LB_CLUSTER_ID", "LVS_VIRTUAL_IP", "PERSISTENCE_MAPPING", "CARTRIDGE_ALIAS", "TOKEN",
                "GROUP_ID", "GROUP_NAME")

def _urls(params: Params, key: str, *, mandatory: bool = False) -> list[str]:
    value = params.text(key, mandatory=mandatory)
    if value is None:
        return []
    urls = [item.strip() for item in value.split(",") if item.strip()]
    if not urls or not all(_is_broker_address(url) for url in urls):
        params.fail(params.error(key, "expected a comma-separated list of host:port"))
        return []
    return urls


def _is_broker_address(text: str) -> bool:
    if "://" in text:
        return bool(re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+(/\S*)?", text))
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def read_agent_conf(path: Path) -> dict[str, str]:
    """Reads the ``[agent]`` section of an agent.conf, keys lower-cased, values raw.

    Raises:
        ConfigError: the file cannot be read, is not INI, or has no ``[agent]`` section.
    """
    parser = configparser.RawConfigParser(strict=False)
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None
    except configparser.Error as exc:
        raise ConfigError(str(path), "(syntax)", f"not an INI file: {exc.message}") from None
    if not parser.has_section("agent"):
        raise ConfigError(str(path), "[agent]", "missing section; an agent.conf keeps its keys under [agent]")
    return dict(parser.items("agent"))


def load_legacy(conf_path: Path, payload_path: Path | None,
                environ: Mapping[str, str]) -> tuple[Config, list[str]]:
    """Loads an agent.conf and its payload (default ``<conf dir>/payload/launch-params``).

    Returns:
        The configuration, and the warnings: a key of agent.conf the agent does not know, and health
        statistics or log publishing enabled without pca-thrift installed (the agent runs without them).

    Raises:
        ConfigErrors: naming the file, the key and what was expected, for every problem.
    """
    conf = read_agent_conf(conf_path)
    home = conf_path.resolve().parent
    payload_path = payload_path or home / "payload" / "launch-params"
    payload = read_payload_file(payload_path) if payload_path.exists() else {}
    known = AGENT_KEYS | {key.lower() for key in PAYLOAD_KEYS}
    warnings = [f"{conf_path}: {key}: unknown key, ignored" for key in conf if key not in known]
    get = Params((str(conf_path), conf, True), (str(payload_path), payload, False))

    tree = _map(get, home, payload_path, warnings)
    identity = read_identity(get)
    # Identity keys may come from agent.conf (as in the original); extensions see the resolved values.
    tree["payload"] = {**payload, **{key: str(get.text(key)) for key in PAYLOAD_KEYS
                                     if get(key) is not None}}
    if identity.application_path:
        tree["agent"]["application_path"] = identity.application_path
    # The identity was read from both files above, with the source of each value: not read again.
    config = build(tree, source=str(conf_path), environ=environ, payload_source=str(payload_path),
                   errors=get.errors, check_identity=False)
    return config, warnings


def _without_thrift(get: Params, key: str, what: str) -> str:
    return (f"{get.source(key)}: {key}: {what} are not sent: the thrift log publisher is not installed "
            f"(pip install pca-thrift)")


def _map(get: Params, home: Path, payload_path: Path, warnings: list[str]) -> dict[str, Any]:
    """Validates the agent.conf keys as the original did and maps them onto the native layout.

    Adds to ``warnings`` what the file enables that this installation cannot do.
    """
    urls = _urls(get, "mb.urls")
    if not urls:
        ip, port = get.text("mb.ip"), get.integer("mb.port")
        if ip is None or port is None:
            get.fail(ConfigError(get.source("mb.urls"), "mb.urls",
                                 "missing; give mb.urls (host:port,...) or both mb.ip and mb.port"))
        else:
            urls = [f"{ip}:{port}"]
    get.integer("mb.publisher.timeout", default=900)  # validated; pca never drops an event (docs)
    stats_enabled = get.flag("cep.stats.publisher.enabled", mandatory=True, default=False)
    tls = {"ca_file": get.text("thrift.tls.ca.file"), "verify": get.flag("thrift.tls.verify")}
    tls = {key: value for key, value in tls.items() if value is not None}
    thrift = {
        "urls": _urls(get, "thrift.receiver.urls", mandatory=True),
        "username": get.text("thrift.server.admin.username", mandatory=True),
        "password": get.text("thrift.server.admin.password", mandatory=True),
        **tls,
    }
    publishers: list[dict[str, Any]] = []
    thrift_installed = "thrift" in installed_names(LOG_PUBLISHERS)
    if stats_enabled:
        if thrift_installed:
            publishers.append({"plugin": "thrift", "streams": ["health"], "options": thrift})
        else:
            warnings.append(_without_thrift(get, "cep.stats.publisher.enabled", "health statistics"))
    logs_enabled = bool(get.flag("enable.data.publisher", default=False))
    if logs_enabled:
        ip = get.text("monitoring.server.ip", mandatory=True)
        get.integer("monitoring.server.port", mandatory=True)
        secure_port = get.integer("monitoring.server.secure.port", mandatory=True)
        monitoring = {
            "urls": [f"{ip}:{secure_port}"],
            "username": get.text("monitoring.server.admin.username", mandatory=True),
            "password": get.text("monitoring.server.admin.password", mandatory=True),
            **tls,
        }
        if thrift_installed:
            publishers.append({"plugin": "thrift", "streams": ["logs"], "options": monitoring})
        else:
            warnings.append(_without_thrift(get, "enable.data.publisher", "log lines"))
    commit = get.flag("COMMIT_ENABLED")
    transport: dict[str, Any] = {
        "plugin": get.text("messaging.transport", default="mqtt"),
        "urls": urls,
        "username": get.text("mb.username"),
        "password": get.text("mb.password") if get.text("mb.username") else None,
    }
    return {
        "agent": {
            "listen_address": get.text("listen.address", default="localhost"),
            "port_check_timeout": (get.integer("port.check.timeout", default=600_000) or 0) / 1000,
            "lb_private_ip": get.text("lb.private.ip"),
            "lb_public_ip": get.text("lb.public.ip"),
            "metadata_service_url": get.text("metadata.service.url"),
            "extensions_dir": str(home / "extensions" / "bash"),
            "payload_file": str(payload_path),
            # Under PCA_HOME, not /var/lib/pca: every agent of a host has its own (docs/configuration.md).
            "state_dir": str(home / "state"),
        },
        "transport": {k: v for k, v in transport.items() if v is not None},
        "artifacts": {
            "enable_update": get.flag("enable.artifact.update", default=True),
            "auto_checkout": get.flag("auto.checkout", default=False),
            "auto_commit": commit if commit is not None else get.flag("auto.commit", default=False),
            "update_interval": get.integer("artifact.update.interval", default=10),
            "clone_retries": get.integer("artifact.clone.retries", default=5),
            "clone_interval": get.integer("artifact.clone.interval", default=10),
            "initial_backup": get.flag("enable.initial.artifact.backup", default=False),
            "super_tenant_repository_path": get.text("super.tenant.repository.path",
                                                     default="/repository/deployment/server/"),
            "tenant_repository_path": get.text("tenant.repository.path", default="/repository/tenants/"),
        },
        "health": {"enabled": stats_enabled,
                   "interval": get.integer("stats.notifier.interval", default=15)},
        "logs": {"enabled": logs_enabled,
                 "paths": [p for p in (get.text("log.file.paths") or "").split("|") if p.strip()]},
        "publishers": publishers,
    }
