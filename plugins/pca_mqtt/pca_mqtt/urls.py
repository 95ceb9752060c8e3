"""Broker addresses: ``mqtt://`` and ``mqtts://`` URLs and the legacy ``host:port`` form of ``mb.urls``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pca_core.api import MASK, Secret, mask_credentials

PLAIN_PORT = 1883
TLS_PORT = 8883
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}  # scheme -> TLS


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """One broker of the failover list.

    ``str()`` gives the URL with the password masked, and :attr:`address` the URL without credentials: the
    only forms that may be logged.

    Attributes:
        host: the host name or IP address.
        port: the TCP port.
        tls: whether the connection uses TLS.
        username: the user name given in the URL, if any (it overrides ``transport.username``).
        password: the password given in the URL, if any.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        user = ""
        if self.username is not None:
            user = f"{self.username}:{MASK}@" if self.password is not None else f"{self.username}@"
        return self.address.replace("://", f"://{user}", 1)

    @property
    def address(self) -> str:
        """The URL without any credentials (``mqtt://host:port``): what the connection log lines show."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_url(text: str, *, tls: bool = False) -> BrokerUrl:
    """Parses one broker address.

    Accepted forms: ``mqtt://host[:port]`` (plain, default port 1883), ``mqtts://host[:port]`` (TLS,
    default port 8883), their aliases ``tcp://`` and ``ssl://``, an optional ``user:password@`` before the
    host, and the legacy ``host:port`` (or bare ``host``) of ``mb.urls``, which uses TLS when ``tls`` is
    true.

    Raises:
        ValueError: the address is malformed; the message shows it with any password masked.
    """
    raw = text.strip()
    shown = mask_credentials(raw)
    scheme_given = "://" in raw
    try:
        parts = urlsplit(raw if scheme_given else f"mqtt://{raw}")
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a broker address ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"{shown!r}: unknown scheme {scheme!r} (expected mqtt:// or mqtts://)")
    if not parts.hostname:
        raise ValueError(f"{shown!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown!r}: a broker address has no path, query or fragment")
    use_tls = _SCHEMES[scheme] if scheme_given else tls
    if port is None:
        port = TLS_PORT if use_tls else PLAIN_PORT
    if port == 0:
        raise ValueError(f"{shown!r}: port 0")
    username = unquote(parts.username) if parts.username is not None else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    return BrokerUrl(parts.hostname, port, use_tls, username, password)


def parse_urls(texts: Sequence[str], *, tls: bool = False) -> tuple[BrokerUrl, ...]:
    """Parses the failover list; all of it must be TLS or all of it plain.

    Args:
        texts: the configured addresses, in order of preference.
        tls: whether ``[transport.tls]`` is configured; it makes the legacy ``host:port`` entries TLS, and an
            explicit ``mqtt://`` entry an error.

    Raises:
        ValueError: an address is malformed, the list is empty, or it mixes TLS and plain brokers.
    """
    if not texts:
        raise ValueError("no broker address; give at least one (mqtt://host:1883, mqtts://host:8883 or "
                         "host:port)")
    urls = []
    for i, text in enumerate(texts):
        try:
            urls.append(parse_url(text, tls=tls))
        except ValueError as exc:
            raise ValueError(f"[{i}]: {exc}") from None
    if len({url.tls for url in urls}) > 1:
        raise ValueError("mixes TLS (mqtts://) and plain (mqtt://) brokers; one client uses one or the other")
    if tls and not urls[0].tls:
        raise ValueError("[transport.tls] is set, but the brokers are plain mqtt:// URLs; use mqtts:// (or "
                         "host:port) or remove [transport.tls]")
    return tuple(urls)
