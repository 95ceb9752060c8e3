"""The options of the ``thrift`` log publisher, and the receivers they name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pca_core.api import ConfigIssue, PluginOptions, Secret

_ADDRESS = re.compile(r"^(?:ssl://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


class ThriftOptions(PluginOptions):
    """Options of the ``thrift`` log publisher (``[publishers.options]``).

    Attributes:
        urls: the receivers, ``host:port`` each (``ssl://`` may precede it): the port of a receiver's
            secure (TLS) service, as Stratos' ``thrift.receiver.urls`` listed it. Every record goes to
            every receiver.
        username: the user to log in as.
        password: its password.
        data_over_tls: send streams and events over the secure service too (what the Stratos agent did);
            by default they go to the plain data service, as WSO2's own agents send them.
        data_port_offset: where the plain data service listens, from the secure port: WSO2 receivers
            listen in plain text 100 below their TLS port (7611 and 7711).
        ca_file: the CA certificates that signed the receivers' certificates; the system's when unset.
        verify: check the receivers' certificates and host names. ``false`` turns that off (a warning is
            logged); WSO2 servers come with a self-signed certificate, which needs ``ca_file`` or this.
        timeout: seconds a connection attempt, a login or a stream definition may take.
        reconnect_delay: seconds before a receiver that failed is tried again, doubling (with jitter) ...
        max_reconnect_delay: ... up to this.
        max_backlog: records kept per receiver that is behind while another receiver accepted them; beyond
            it the oldest are dropped and counted.
        bundle_size: events per bundle at most.
    """

    urls: tuple[str, ...]
    username: str
    password: Secret
    data_over_tls: bool = False
    data_port_offset: int = -100
    ca_file: str | None = None
    verify: bool = True
    timeout: float = 10.0
    reconnect_delay: float = 2.0
    max_reconnect_delay: float = 60.0
    max_backlog: int = 10_000
    bundle_size: int = 250


@dataclass(frozen=True, slots=True)
class Address:
    """A receiver: its host, its secure (TLS) port and the port its events go to."""

    host: str
    secure_port: int
    data_port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.secure_port}"


def addresses(options: ThriftOptions) -> tuple[Address, ...]:
    """The receivers of ``options.urls``.

    Raises:
        ValueError: an entry is not ``host:port``, or a port is out of range.
    """
    found = []
    for i, text in enumerate(options.urls):
        match = _ADDRESS.match(text.strip())
        port = int(match["port"]) if match else 0
        data_port = port if options.data_over_tls else port + options.data_port_offset
        if match is None or not 0 < port < 65536 or not 0 < data_port < 65536:
            raise ValueError(f"urls[{i}]: a receiver's host:port (its TLS port, with the plain data port "
                             f"{options.data_port_offset:+d} from it), not {text!r}")
        found.append(Address(match["host"].strip("[]"), port, data_port))
    return tuple(found)


def config_issues(options: ThriftOptions) -> list[ConfigIssue]:
    """Every problem of the options: receivers, numbers out of range."""
    issues = []
    if not options.urls:
        issues.append(ConfigIssue("options.urls", "at least one receiver, host:port"))
    try:
        addresses(options)
    except ValueError as exc:
        key, _, expected = str(exc).partition(": ")
        issues.append(ConfigIssue(f"options.{key}", expected))
    for key in ("timeout", "reconnect_delay"):
        if not getattr(options, key) > 0:
            issues.append(ConfigIssue(f"options.{key}", f"seconds, more than 0; got {getattr(options, key)}"))
    if not options.max_reconnect_delay >= options.reconnect_delay:
        issues.append(ConfigIssue("options.max_reconnect_delay",
                                  f"seconds, not below reconnect_delay ({options.reconnect_delay})"))
    for key in ("max_backlog", "bundle_size"):
        if getattr(options, key) < 1:
            issues.append(ConfigIssue(f"options.{key}",
                                      f"a whole number, at least 1; got {getattr(options, key)}"))
    return issues
