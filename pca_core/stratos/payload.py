"""The instance's launch parameters (the Stratos payload) and the identity read from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pca_core.api.errors import ConfigError, ConfigErrors
from pca_core.api.secrets import Secret, mask_credentials

_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9]*([_-][A-Z0-9]+)+$")

MANDATORY_KEYS = ("APPLICATION_ID", "SERVICE_NAME", "CLUSTER_ID", "PORTS", "MULTITENANT", "TENANT_ID",
                  "MEMBER_ID")
"""Payload keys the agent cannot start without: the original agent's, and ``MEMBER_ID``, which the original
read as optional although its lifecycle waits for that member to be initialized (without it, for ever)."""


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
    group_id: str | None = None


class Params:
    """Looks keys up in an ordered list of sources, as the original agent's ``read_property`` did.

    Each source is ``(name, values, case_insensitive)``; the first source holding a set value wins, and
    values follow :func:`convert_value`. A value that is missing or malformed is recorded in :attr:`errors`
    (naming the source it came from; a missing upper-case key, a payload parameter, against the last
    source, any other against the first) and read as unset, so that one pass finds every problem.

    Attributes:
        errors: the problems found so far, in the order of the lookups.
    """

    def __init__(self, *sources: tuple[str, Mapping[str, str], bool]) -> None:
        self.sources = sources
        self.errors: list[ConfigError] = []

    def _find(self, key: str) -> tuple[str, str | bool | None]:
        for name, values, case_insensitive in self.sources:
            value = convert_value(values.get(key.lower() if case_insensitive else key, ""))
            if value is not None:
                return name, value
        return self.sources[-1 if key.isupper() else 0][0], None

    def __call__(self, key: str) -> str | bool | None:
        """The converted value of ``key``, None when unset."""
        return self._find(key)[1]

    def source(self, key: str) -> str:
        """The name of the source ``key`` comes from (the last source when it is unset)."""
        return self._find(key)[0]

    def error(self, key: str, expected: str) -> ConfigError:
        """A ConfigError for ``key``, quoting its value (credentials in URLs masked)."""
        raw = self(key)
        if isinstance(raw, str) and _PLACEHOLDER.match(raw):
            expected += f"; {raw!r} looks like an unreplaced template placeholder"
        elif raw is not None:
            expected += f", got {mask_credentials(str(raw))!r}"
        return ConfigError(self.source(key), key, expected)

    def fail(self, error: ConfigError) -> None:
        """Records a problem; the value is then read as unset."""
        self.errors.append(error)

    def text(self, key: str, *, mandatory: bool = False, default: str | None = None) -> str | None:
        """The value as text (booleans as ``true``/``false``); a problem if mandatory and unset."""
        value = self(key)
        if value is None:
            if mandatory:
                self.fail(ConfigError(self.source(key), key, "missing; this key is mandatory"))
            return default
        return str(value).lower() if isinstance(value, bool) else value

    def flag(self, key: str, *, mandatory: bool = False, default: bool | None = None) -> bool | None:
        """The value as a boolean; a problem if it is not ``true``/``false``, or mandatory and unset."""
        value = self(key)
        if value is None:
            if mandatory:
                self.fail(ConfigError(self.source(key), key, "missing; expected true or false"))
            return default
        if not isinstance(value, bool):
            self.fail(self.error(key, "expected true or false"))
            return default
        return value

    def integer(self, key: str, *, mandatory: bool = False, default: int | None = None) -> int | None:
        """The value as a whole number; a problem if it is not one, or mandatory and unset."""
        value = self.text(key, mandatory=mandatory)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            self.fail(self.error(key, "expected a whole number"))
            return default

    def secret(self, key: str) -> Secret | None:
        """The value as a :class:`Secret`."""
        value = self.text(key)
        return None if value is None else Secret(value)


def read_identity(params: Params) -> Identity:
    """Reads and validates the identity; a missing key or a malformed value is added to ``params.errors``."""
    ports_text = params.text("PORTS", mandatory=True)
    items = ports_text.replace("'", "").split("|") if ports_text is not None else []
    ports: list[int] = []
    for item in items:
        if not item.strip().isdigit() or not 0 < int(item) < 65536:
            params.fail(params.error("PORTS", "expected '|'-separated TCP ports"))
            ports.clear()
            break
        ports.append(int(item))
    text = params.text
    identity = Identity(
        application_id=text("APPLICATION_ID", mandatory=True) or "",
        service_name=text("SERVICE_NAME", mandatory=True) or "",
        cluster_id=text("CLUSTER_ID", mandatory=True) or "",
        tenant_id=text("TENANT_ID", mandatory=True) or "",
        multitenant=bool(params.flag("MULTITENANT", mandatory=True)),
        ports=tuple(ports),
        cluster_instance_id=text("CLUSTER_INSTANCE_ID"),
        member_id=text("MEMBER_ID", mandatory=True),
        instance_id=text("INSTANCE_ID"),
        network_partition_id=text("NETWORK_PARTITION_ID"),
        partition_id=text("PARTITION_ID"),
        application_path=text("APPLICATION_PATH"),
        repo_url=text("REPO_URL"),
        cartridge_key=params.secret("CARTRIDGE_KEY"),
        commit_enabled=params.flag("COMMIT_ENABLED"),
        lb_cluster_id=text("LB_CLUSTER_ID"),
        lvs_virtual_ip=text("LVS_VIRTUAL_IP"),
        persistence_mapping=text("PERSISTENCE_MAPPING"),
        cartridge_alias=text("CARTRIDGE_ALIAS"),
        token=params.secret("TOKEN"),
        group_id=text("GROUP_ID") or text("GROUP_NAME"),
    )
    if identity.repo_url and identity.cartridge_key is None:
        params.fail(ConfigError(params.source("CARTRIDGE_KEY"), "CARTRIDGE_KEY",
                                "missing; mandatory when REPO_URL is set"))
    return identity


def identity_from_params(params: Mapping[str, str], source: str) -> Identity:
    """Reads the identity from payload parameters alone.

    Raises:
        ConfigErrors: every missing key and malformed value.
    """
    lookup = Params((source, params, False))
    identity = read_identity(lookup)
    if lookup.errors:
        raise ConfigErrors(lookup.errors)
    return identity
