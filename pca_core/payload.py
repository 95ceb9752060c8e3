"""The instance's launch parameters (the Stratos payload) and the identity read from them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pca_core.errors import ConfigError
from pca_core.secret import Secret

Lookup = Callable[[str], "str | bool | None"]

# Keys whose values are secrets; a Docker payload carries the whole environment, so match by name.
_SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|(^|_)KEY$", re.IGNORECASE)

MANDATORY_KEYS = ("APPLICATION_ID", "SERVICE_NAME", "CLUSTER_ID", "PORTS", "MULTITENANT", "TENANT_ID")
"""Payload keys the agent cannot start without (as the original agent)."""


def convert_value(raw: str) -> str | bool | None:
    """Applies the original agent's value rules: stripped; ``""``/``null`` unset; ``true``/``false`` bools."""
    value = raw.strip()
    if value == "" or value.lower() == "null":
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def parse_launch_params(text: str) -> dict[str, str]:
    """Parses a ``launch-params`` file: ``KEY=VALUE`` pairs separated by commas.

    Parts without ``=`` (the junk of a shell environment dump) are skipped; unset values (empty, ``null``)
    are left out. Unlike the original agent, a value keeps any ``=`` it contains (base64 tokens end in one);
    a ``,`` still ends it, since it is the separator.
    """
    params: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        if convert_value(value) is not None:
            params[key] = value.strip()
    return params


def is_secret_key(key: str) -> bool:
    """Tells whether a payload or option key names a secret (password, token, key ...)."""
    return bool(_SECRET_KEY.search(key))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this instance is in the Stratos topology, and what its payload asks of the agent."""

    application_id: str
    service_name: str
    cluster_id: str
    tenant_id: str
    multitenant: bool
    ports: tuple[int, ...]
    cluster_instance_id: str | None = None
    member_id: str | None = None
    instance_id: str | None = None
    network_partition_id: str | None = None
    partition_id: str | None = None
    application_path: str | None = None
    repo_url: str | None = None
    cartridge_key: Secret | None = None
    commit_enabled: bool | None = None
    lb_cluster_id: str | None = None
    lvs_virtual_ip: str | None = None
    persistence_mapping: str | None = None
    cartridge_alias: str | None = None
    token: Secret | None = None


def read_identity(lookup: Lookup, source: str) -> Identity:
    """Reads and validates the identity through ``lookup`` (which applies :func:`convert_value`).

    Raises:
        ConfigError: a mandatory key is missing, or a value has the wrong form.
    """

    def text(key: str, mandatory: bool = False) -> str | None:
        value = lookup(key)
        if value is None:
            if mandatory:
                raise ConfigError(source, key, "missing; this payload parameter is mandatory")
            return None
        return str(value).lower() if isinstance(value, bool) else value

    def flag(key: str, mandatory: bool = False) -> bool | None:
        value = lookup(key)
        if value is None and mandatory:
            raise ConfigError(source, key, "missing; expected true or false")
        if value is None or isinstance(value, bool):
            return value
        raise ConfigError(source, key, f"expected true or false, got {value!r}")

    def secret(key: str) -> Secret | None:
        value = text(key)
        return None if value is None else Secret(value)

    ports_text = text("PORTS", mandatory=True) or ""
    ports: list[int] = []
    for item in ports_text.replace("'", "").split("|"):
        if not item.strip().isdigit() or not 0 < int(item) < 65536:
            raise ConfigError(source, "PORTS", f"expected '|'-separated TCP ports, got {ports_text!r}")
        ports.append(int(item))
    identity = Identity(
        application_id=text("APPLICATION_ID", True) or "",
        service_name=text("SERVICE_NAME", True) or "",
        cluster_id=text("CLUSTER_ID", True) or "",
        tenant_id=text("TENANT_ID", True) or "",
        multitenant=bool(flag("MULTITENANT", True)),
        ports=tuple(ports),
        cluster_instance_id=text("CLUSTER_INSTANCE_ID"),
        member_id=text("MEMBER_ID"),
        instance_id=text("INSTANCE_ID"),
        network_partition_id=text("NETWORK_PARTITION_ID"),
        partition_id=text("PARTITION_ID"),
        application_path=text("APPLICATION_PATH"),
        repo_url=text("REPO_URL"),
        cartridge_key=secret("CARTRIDGE_KEY"),
        commit_enabled=flag("COMMIT_ENABLED"),
        lb_cluster_id=text("LB_CLUSTER_ID"),
        lvs_virtual_ip=text("LVS_VIRTUAL_IP"),
        persistence_mapping=text("PERSISTENCE_MAPPING"),
        cartridge_alias=text("CARTRIDGE_ALIAS"),
        token=secret("TOKEN"),
    )
    if identity.repo_url and identity.cartridge_key is None:
        raise ConfigError(source, "CARTRIDGE_KEY", "missing; mandatory when REPO_URL is set")
    return identity


def identity_from_params(params: Mapping[str, str], source: str) -> Identity:
    """Reads the identity from payload parameters alone."""
    return read_identity(lambda key: convert_value(params[key]) if key in params else None, source)
