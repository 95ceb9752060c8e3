"""The agent's configuration: the native TOML form, environment overrides, validation and display.

A configuration comes from one file: native TOML, or a legacy Stratos ``agent.conf`` (see
:mod:`pca_core.config.legacy`) together with its ``launch-params`` payload. Environment variables named
``PCA_<SECTION>__<KEY>`` override file values (``PCA_TRANSPORT__URLS=h1:1883,h2:1883``,
``PCA_TRANSPORT__TLS__CA_FILE=...``, ``PCA_PAYLOAD__MEMBER_ID=...``).
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from pca_core.api.errors import ConfigError
from pca_core.api.secrets import MASK, Secret, mask_data
from pca_core.stratos.payload import Identity, identity_from_params, parse_launch_params


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class TlsConfig(_Section):
    """TLS for a broker connection; certificates are verified unless ``verify`` is false."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class TransportConfig(_Section):
    """The broker connection; ``options`` is the selected plugin's own table."""

    plugin: str = "mqtt"
    urls: tuple[str, ...] = ()
    username: str | None = None
    password: Secret | None = None
    client_id: str | None = None
    qos: int = 1
    connect_timeout: float = 10.0
    publish_timeout: float = 10.0
    tls: TlsConfig | None = None
    options: dict[str, Any] = {}


class PluginChoice(_Section):
    """A plugin chosen by name, with its own options table."""

    plugin: str
    options: dict[str, Any] = {}


class PublisherConfig(PluginChoice):
    """A log publisher and the record streams it receives (``logs``, ``health``)."""

    streams: tuple[str, ...] = ("logs", "health")


class ArtifactsConfig(_Section):
    """Artifact checkout and the periodic update task."""

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


class HealthConfig(_Section):
    """Health statistics sampling."""

    enabled: bool = True
    interval: float = 15.0


class LogsConfig(_Section):
    """Log files to tail and ship to the publishers of stream ``logs``."""

    enabled: bool = False
    paths: tuple[str, ...] = ()


class AgentConfig(_Section):
    """The agent's own behaviour."""

    listen_address: str = "localhost"
    port_check_timeout: float = 600.0
    application_path: str | None = None
    lb_private_ip: str | None = None
    lb_public_ip: str | None = None
    metadata_service_url: str | None = None
    extensions_dir: str | None = None
    payload_file: str | None = None
    state_dir: str = "/var/lib/pca"
    shutdown_timeout: float = 10.0
    dispatch_queue_size: int = 10_000
    workers: int = 4


class Config(_Section):
    """The whole effective configuration. ``payload`` holds the launch parameters as strings."""

    agent: AgentConfig = AgentConfig()
    transport: TransportConfig = TransportConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    health: HealthConfig = HealthConfig()
    logs: LogsConfig = LogsConfig()
    publishers: tuple[PublisherConfig, ...] = ()
    event_handlers: tuple[PluginChoice, ...] = ()
    payload: dict[str, str] = {}

    @property
    def identity(self) -> Identity:
        """The instance's identity, read from the payload (validated when the configuration loaded)."""
        return identity_from_params(self.payload, "payload")


_T = typing.TypeVar("_T")
_ENV_NAME = re.compile(r"^PCA_([A-Z][A-Z0-9_]*?)__(\w+)$")


def _dec_hook(typ: type, value: Any) -> Any:
    if typ is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ValueError("Expected `str`")
    raise NotImplementedError


def convert(data: Any, typ: type[_T], *, source: str, prefix: str = "",
               origins: Mapping[str, str] | None = None) -> _T:
    """Converts plain data into ``typ``, turning a validation failure into a :class:`ConfigError`.

    Args:
        data: what a parser produced (strings are converted to numbers and booleans where expected).
        typ: the target type, usually a ``msgspec.Struct``.
        source: the file the data came from.
        prefix: the dotted key under which ``data`` sits in that file.
        origins: dotted keys whose value came from elsewhere, mapped to where (an environment variable).
    """
    try:
        return msgspec.convert(data, typ, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _config_error(str(exc), typ, source, prefix, origins or {}) from None


def _config_error(message: str, typ: type, source: str, prefix: str,
                  origins: Mapping[str, str]) -> ConfigError:
    text, _, where = message.partition(" - at `")
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if unknown:
        path = f"{path}.{unknown[1]}" if path else unknown[1]
        known = _field_names(typ, path.split(".")[:-1])
        expected = "unknown key" + (f" (known keys: {', '.join(known)})" if known else "")
    else:
        expected = text.replace("`", "").replace("Expected", "expected")
    key = ".".join(part for part in (prefix, path) if part)
    if key in origins:
        return ConfigError(origins[key], key, expected)
    return ConfigError(source, key or "(top level)", expected)


def _field_names(typ: Any, path: list[str]) -> list[str]:
    for part in path:
        typ = _field_type(typ, re.sub(r"\[\d+\]$", "", part))
        if typ is None:
            return []
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        return [f.name for f in msgspec.structs.fields(typ)]
    return []


def _field_type(typ: Any, name: str) -> Any:
    """The type of field ``name`` of struct ``typ``, unwrapping Optional and tuple/list; None if unknown."""
    if not (isinstance(typ, type) and issubclass(typ, msgspec.Struct)):
        return None
    for field in msgspec.structs.fields(typ):
        if field.name == name:
            return _unwrap(field.type)
    return None


def _unwrap(typ: Any) -> Any:
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if isinstance(typ, types.UnionType | typing._UnionGenericAlias) and len(args) == 1:  # type: ignore[attr-defined]
        return _unwrap(args[0])
    if typing.get_origin(typ) in (tuple, list) and args:
        return _unwrap(args[0])
    return typ


def _is_sequence(typ: Any, path: list[str]) -> bool:
    for part in path[:-1]:
        typ = _field_type(typ, part)
    if not (isinstance(typ, type) and issubclass(typ, msgspec.Struct)):
        return False
    for field in msgspec.structs.fields(typ):
        if field.name == path[-1]:
            candidates = (field.type, *typing.get_args(field.type))
            return any(typing.get_origin(a) in (tuple, list) for a in candidates)
    return False


def env_overrides(tree: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Applies ``PCA_<SECTION>__<KEY>`` variables to ``tree`` in place; returns {dotted key: variable}.

    Sections and keys are the TOML names in upper case; ``__`` separates nesting levels. Payload keys keep
    their case (``PCA_PAYLOAD__MEMBER_ID``). A value for a list is comma-separated.

    Raises:
        ConfigError: a variable names a section that does not exist.
    """
    origins: dict[str, str] = {}
    sections = {f.name for f in msgspec.structs.fields(Config)}
    for name in sorted(environ):
        match = _ENV_NAME.match(name)
        if not match:
            continue
        section = match[1].lower()
        if section not in sections:
            raise ConfigError(f"environment variable {name}", section,
                              f"unknown section (known: {', '.join(sorted(sections))})")
        if section == "publishers" or section == "event_handlers":
            raise ConfigError(f"environment variable {name}", section,
                              "lists of plugins cannot be set from the environment; use the file")
        rest = match[2] if section == "payload" else match[2].lower()
        path = [section, *rest.split("__")]
        value: Any = environ[name]
        if _is_sequence(Config, path):
            value = [item.strip() for item in value.split(",") if item.strip()]
        node = tree
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        origins[".".join(path)] = f"environment variable {name}"
    return origins


def load_toml(path: Path) -> dict[str, Any]:
    """Reads a TOML file into plain data.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML.
    """
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", f"not valid TOML: {exc}") from None


def read_payload_file(path: Path) -> dict[str, str]:
    """Reads a ``launch-params`` payload file.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        return parse_launch_params(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None


def build(tree: dict[str, Any], *, source: str, environ: Mapping[str, str],
          origins: Mapping[str, str] | None = None, payload_source: str | None = None) -> Config:
    """Applies environment overrides to ``tree``, then validates it into a :class:`Config`.

    Raises:
        ConfigError: naming the file or variable, the key and what was expected.
    """
    all_origins = dict(origins or {})
    all_origins.update(env_overrides(tree, environ))
    payload = tree.get("payload")
    if isinstance(payload, dict):
        # TOML may give numbers or booleans; payload parameters are strings, as in launch-params.
        tree["payload"] = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in payload.items()}
    config = convert(tree, Config, source=source, origins=all_origins)
    identity_source = payload_source or source
    lookup_origins = {key.removeprefix("payload."): value for key, value in all_origins.items()
                      if key.startswith("payload.")}
    try:
        identity_from_params(config.payload, identity_source)
    except ConfigError as exc:
        raise ConfigError(lookup_origins.get(exc.key, exc.source), exc.key, exc.expected) from None
    return config


def load(path: str | Path, payload_path: str | Path | None = None,
         environ: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """Loads a configuration file of either form; returns it with the warnings to show.

    A file whose name ends in ``.toml`` is native; anything else is read as a legacy ``agent.conf``.

    Raises:
        ConfigError: naming the file, the key and what was expected.
    """
    path = Path(path)
    environ = os.environ if environ is None else environ
    if path.suffix != ".toml":
        from pca_core.config.legacy import load_legacy

        return load_legacy(path, None if payload_path is None else Path(payload_path), environ)
    tree = load_toml(path)
    file_payload = tree.get("payload", {})
    if not isinstance(file_payload, dict):
        raise ConfigError(str(path), "payload", "expected a table of KEY = \"value\" launch parameters")
    agent = tree.get("agent", {})
    payload_file = payload_path or (agent.get("payload_file") if isinstance(agent, dict) else None)
    payload_source = str(path)
    if payload_file:
        payload_file = (path.parent / payload_file) if not Path(payload_file).is_absolute() else payload_file
        tree["payload"] = {**file_payload, **read_payload_file(Path(payload_file))}
        payload_source = str(payload_file)
    return build(tree, source=str(path), environ=environ, payload_source=payload_source), []


def to_data(config: Config) -> dict[str, Any]:
    """The configuration as plain data, secrets masked, unset values and empty tables left out."""

    def enc(value: Any) -> Any:
        if isinstance(value, Secret):
            return MASK
        raise NotImplementedError

    data = msgspec.to_builtins(config, enc_hook=enc)
    return _drop_none(mask_data(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
