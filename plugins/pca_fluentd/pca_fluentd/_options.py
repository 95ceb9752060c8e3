"""The options of the ``fluentd`` log publisher, the servers they name, and what is wrong with them."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from pca_core.api import ConfigIssue, PluginOptions, PublisherConfig, Secret
from pca_fluentd._tags import template_problem

_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")

COMPRESSIONS = ("none", "gzip")


class FluentdOptions(PluginOptions):
    """Options of the ``fluentd`` log publisher (``[publishers.options]``).

    Attributes:
        servers: Fluentd (or Fluent Bit) ``forward`` inputs, ``host:port`` each. The first that works is
            used until it fails; a batch that finds its server down is offered to the others, once each.
        tls: speak TLS to the servers (a ``<transport tls>`` input).
        ca_file: the CA certificates that signed the servers' certificates; the system's when unset.
        verify: check the servers' certificates and host names; ``false`` turns that off (a warning is
            logged).
        cert_file: a client certificate, for servers that ask for one.
        key_file: its private key, when it is not in ``cert_file``.
        shared_key: the ``shared_key`` of the servers' ``<security>`` section: the HELO/PING/PONG
            handshake is then required, and the server's answer is checked too.
        self_hostname: the name this client gives in the handshake; the machine's host name by default.
        username: the user to log in as, for servers with ``user_auth``.
        password: its password.
        tag: the Fluentd tag of the records, a template: ``{stream}`` and any property of the stream
            (``member_id``, ``cluster_id``, ``service_name``, ``application_id``, ``tenant_id`` ...).
        tags: a tag template per stream name, in place of ``tag``.
        require_ack: count a batch as accepted only once the server acknowledged it (at least once);
            ``false`` counts it once written to the socket (at most once: what a crashing server had not
            yet stored is lost).
        compress: ``none``, or ``gzip`` to compress each chunk (CompressedPackedForward).
        time_as_integer: send times as whole seconds, for Fluentd v0.12 receivers, instead of EventTime.
        timeout: seconds a connection may take to open: TCP connect, TLS and the handshake.
    """

    servers: tuple[str, ...] = ("127.0.0.1:24224",)
    tls: bool = False
    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    shared_key: Secret | None = None
    self_hostname: str = msgspec.field(default_factory=socket.gethostname)
    username: str | None = None
    password: Secret | None = None
    tag: str = "pca.{stream}"
    tags: dict[str, str] = msgspec.field(default_factory=dict)
    require_ack: bool = True
    compress: str = "none"
    time_as_integer: bool = False
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    """A Fluentd ``forward`` input: its host and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_server(text: str) -> Server | None:
    """The server ``text`` names as ``host:port`` (an IPv6 address in brackets); None when it names none."""
    match = _ADDRESS.match(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        return None
    return Server(match["host"].strip("[]"), int(match["port"]))


def servers(options: FluentdOptions) -> tuple[Server, ...]:
    """The servers of ``options.servers``, in order.

    Raises:
        ValueError: an entry names no server (:func:`config_issues` reports which).
    """
    found = []
    for text in options.servers:
        server = parse_server(text)
        if server is None:
            raise ValueError(f"options.servers: {text!r} is not host:port")
        found.append(server)
    if not found:
        raise ValueError("options.servers: no server")
    return tuple(found)


def config_issues(config: PublisherConfig, options: FluentdOptions) -> Iterator[ConfigIssue]:
    """Every problem of the options: addresses, choices, templates, and settings that need each other."""
    if not options.servers:
        yield ConfigIssue("options.servers", "at least one server, host:port")
    for i, text in enumerate(options.servers):
        if parse_server(text) is None:
            yield ConfigIssue(f"options.servers[{i}]", f"host:port, a port from 1 to 65535 (an IPv6 address "
                                                       f"in brackets), not {text!r}")
    if options.compress not in COMPRESSIONS:
        yield ConfigIssue("options.compress", f"one of {', '.join(map(repr, COMPRESSIONS))}, not "
                                              f"{options.compress!r}")
    if not options.timeout > 0:
        yield ConfigIssue("options.timeout", f"seconds, more than 0; got {options.timeout}")
    yield from _tag_issues(config, options)
    yield from _tls_issues(options)
    yield from _login_issues(options)


def _tag_issues(config: PublisherConfig, options: FluentdOptions) -> Iterator[ConfigIssue]:
    problem = template_problem(options.tag)
    if problem is not None:
        yield ConfigIssue("options.tag", problem)
    for stream, template in options.tags.items():
        if stream not in config.streams:
            yield ConfigIssue(f"options.tags.{stream}",
                              f"the name of a stream this publisher receives ({', '.join(config.streams)})")
        problem = template_problem(template)
        if problem is not None:
            yield ConfigIssue(f"options.tags.{stream}", problem)


def _tls_issues(options: FluentdOptions) -> Iterator[ConfigIssue]:
    if not options.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(options, key) is not None:
                yield ConfigIssue(f"options.{key}", f"set only with options.tls = true (the servers are "
                                                    f"spoken to in plain text, so {key} would be ignored)")
    if options.key_file is not None and options.cert_file is None:
        yield ConfigIssue("options.key_file",
                          "set only with options.cert_file, the certificate it belongs to")


def _login_issues(options: FluentdOptions) -> Iterator[ConfigIssue]:
    if options.shared_key is not None and not options.shared_key.reveal():
        yield ConfigIssue("options.shared_key", "the servers' shared key, not empty")
    if not options.self_hostname:
        yield ConfigIssue("options.self_hostname", "the name of this client in the handshake, not empty")
    if (options.username is None) != (options.password is None):
        missing = "password" if options.password is None else "username"
        yield ConfigIssue(f"options.{missing}", "set together with options.username and options.password "
                                                "(a server with user_auth wants both)")
    if options.username is not None and options.shared_key is None:
        yield ConfigIssue("options.shared_key", "set with options.username: the user logs in during the "
                                                "shared-key handshake")
