"""Bootstrap servers: ``kafka://`` and ``kafka+ssl://`` URLs, and the bare ``host:port`` of Kafka configs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pca_core.api import mask_credentials

PORT = 9092
_SCHEMES = {"kafka": False, "kafka+ssl": True}  # scheme -> TLS
_OTHER_PROTOCOLS = {"mqtt": "mqtt", "mqtts": "mqtt", "tcp": "mqtt", "ssl": "mqtt", "amqp": "amqp",
                    "amqps": "amqp"}


@dataclass(frozen=True, slots=True)
class Server:
    """One bootstrap server.

    Attributes:
        host: the host name or IP address.
        port: the TCP port.
        tls: whether the connection uses TLS.
    """

    host: str
    port: int
    tls: bool

    @property
    def address(self) -> str:
        """``host:port``, as kafka-python takes it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{'kafka+ssl' if self.tls else 'kafka'}://{self.address}"


def parse_url(text: str, *, tls: bool = False) -> Server:
    """Parses one bootstrap server.

    Accepted: ``kafka://host[:port]`` (default port 9092), ``kafka+ssl://host[:port]`` (TLS), and a bare
    ``host[:port]``, which uses TLS when ``tls`` is true. Credentials belong in ``transport.username`` and
    ``transport.password`` (one client, one login), not in a URL.

    Raises:
        ValueError: the address is malformed, carries credentials, or names another protocol.
    """
    raw = text.strip()
    shown = mask_credentials(raw)
    given = "://" in raw
    try:
        parts = urlsplit(raw if given else f"kafka://{raw}")
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a bootstrap server address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        hint = ""
        if scheme in _OTHER_PROTOCOLS:
            hint = f"; for a {scheme}:// broker set transport.plugin = \"{_OTHER_PROTOCOLS[scheme]}\""
        raise ValueError(f"{shown!r}: unknown scheme {scheme!r} (the kafka transport takes kafka://, "
                         f"kafka+ssl:// or host:port){hint}")
    if not parts.hostname:
        raise ValueError(f"{shown!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{shown!r}: put the credentials in transport.username and transport.password, not "
                         f"in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown!r}: a bootstrap server address has no path, query or fragment")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0")
    return Server(parts.hostname, port or PORT, _SCHEMES[scheme] if given else tls)


def parse_urls(texts: Sequence[str], *, tls: bool = False) -> tuple[Server, ...]:
    """Parses the bootstrap list; all of it TLS or all of it plain (one client, one security protocol).

    Raises:
        ValueError: the list is empty, an address is malformed (the message starts with its index), or
            the list mixes TLS and plain servers.
    """
    if not texts:
        raise ValueError("no bootstrap server; give at least one (kafka://host:9092 or host:9092)")
    servers = []
    for i, text in enumerate(texts):
        try:
            servers.append(parse_url(text, tls=tls))
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    if len({server.tls for server in servers}) > 1:
        raise ValueError("mixes TLS (kafka+ssl://) and plain (kafka://) servers; one client uses one or the "
                         "other")
    return tuple(servers)
