"""Broker addresses: ``amqp://`` and ``amqps://`` URLs, and the bare ``host:port`` of a legacy ``mb.urls``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pca_core.api import MASK, Secret, mask_credentials

PORTS = {"amqp": 5672, "amqps": 5671}
"""The scheme's default port; ``amqps`` is AMQP over TLS."""

_OTHER_PROTOCOLS = {"mqtt": "mqtt", "mqtts": "mqtt", "tcp": "mqtt", "ssl": "mqtt", "kafka": "kafka"}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """One broker of the failover list.

    ``str()`` gives the URL with the password masked, and :attr:`address` the URL without credentials:
    the only forms that may be logged.

    Attributes:
        host: the host name or IP address.
        port: the TCP port.
        tls: whether the connection uses TLS.
        username: the user given in the URL, if any (it wins over ``transport.username``).
        password: the password given in the URL, if any.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: Secret | None = None

    @property
    def address(self) -> str:
        """The URL without credentials, ``amqp://host:port``: what proton is given and log lines show."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'amqps' if self.tls else 'amqp'}://{host}:{self.port}"

    def __str__(self) -> str:
        if self.username is None:
            return self.address
        user = f"{self.username}:{MASK}" if self.password is not None else self.username
        return self.address.replace("://", f"://{user}@", 1)


def parse_url(text: str, *, tls: bool = False) -> BrokerUrl:
    """Parses one broker address.

    Accepted: ``amqp://host[:port]`` (default port 5672), ``amqps://host[:port]`` (TLS, 5671), either with
    ``user:password@`` before the host, and a bare ``host[:port]``, which uses TLS when ``tls`` is true.

    Raises:
        ValueError: the address is malformed or names another protocol; the message masks any password
            and says what to write instead.
    """
    raw = text.strip()
    shown = mask_credentials(raw)
    given = "://" in raw
    try:
        parts = urlsplit(raw if given else f"{'amqps' if tls else 'amqp'}://{raw}")
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a broker address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in PORTS:
        hint = ""
        if scheme in _OTHER_PROTOCOLS:
            hint = f"; for a {scheme}:// broker set transport.plugin = \"{_OTHER_PROTOCOLS[scheme]}\""
        raise ValueError(f"{shown!r}: unknown scheme {scheme!r} (the amqp transport takes amqp:// or "
                         f"amqps://){hint}")
    if not parts.hostname:
        raise ValueError(f"{shown!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown!r}: a broker address has no path, query or fragment (AMQP addresses come "
                         f"from the topics; see options.address_prefix)")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0")
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    return BrokerUrl(parts.hostname, port or PORTS[scheme], scheme == "amqps",
                     unquote(parts.username) if parts.username is not None else None, password)


def parse_urls(texts: Sequence[str], *, tls: bool = False) -> tuple[BrokerUrl, ...]:
    """Parses the failover list, in order; each broker may be TLS or plain.

    Raises:
        ValueError: the list is empty, or an address is malformed (the message starts with its index).
    """
    if not texts:
        raise ValueError("no broker address; give at least one (amqp://host:5672 or amqps://host:5671)")
    urls = []
    for i, text in enumerate(texts):
        try:
            urls.append(parse_url(text, tls=tls))
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    return tuple(urls)
