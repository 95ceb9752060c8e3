"""The servers of ``transport.urls`` and the redis-py connections to them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from pca_core import AuthenticationError, ConnectionFailed, Secret

PLUGIN = "redis"
GROUP = "pca.transports"
DEFAULT_PORT = 6379
REFUSED = (redis.AuthenticationError, NoPermissionError)
"""What redis-py raises when a server refuses the credentials."""

ConnectionFactory = Callable[["Server", float, float], redis.Connection]
"""Makes an unconnected connection: (server, connect timeout, socket timeout)."""


@dataclass(frozen=True, slots=True)
class Server:
    """One Redis server of the URL list, with the credentials to use on it.

    Attributes:
        tls: whether the connection uses TLS (``rediss://``).
        host: the host name or address.
        port: the TCP port.
        db: the database number of the URL's path; pub/sub ignores it, as Redis channels are global.
        username: the ACL user, or None for the default user.
        password: the password, or None.
    """

    tls: bool
    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}"


def parse_server(url: str, *, username: str | None, password: Secret | str | None, tls: bool) -> Server:
    """Reads one URL of ``transport.urls``.

    A URL's own user name and password win over the configured ``username`` and ``password``. A bare
    ``host:port`` uses TLS when the transport has TLS settings.

    Raises:
        ValueError: the URL is malformed, or asks for plain TCP while TLS settings are given.
    """
    if isinstance(password, str):
        password = Secret(password)
    text = url if "://" in url else f"{'rediss' if tls else 'redis'}://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {url!r} ({exc})") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"expected redis://[user:password@]host[:port][/db] or rediss://..., not {url!r}")
    if parts.scheme == "redis" and tls:
        raise ValueError(f"TLS settings are given but {url!r} is plain redis://; use rediss://")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the path of {url!r} must be a database number")
    return Server(tls=parts.scheme == "rediss", host=parts.hostname, port=port, db=int(path or 0),
                  username=unquote(parts.username) if parts.username else username,
                  password=Secret(unquote(parts.password)) if parts.password else password)


def new_connection(server: Server, *, tls_settings: Any, connect_timeout: float, socket_timeout: float,
                   client_name: str | None) -> redis.Connection:
    """A redis-py connection to ``server``, not yet connected.

    It speaks RESP2 with redis-py 6, 7 and 8 alike, and never retries on its own: failover and backoff are
    the transport's.
    """
    kwargs: dict[str, Any] = {
        "host": server.host, "port": server.port, "db": server.db, "username": server.username,
        "password": server.password.reveal() if server.password else None,
        "socket_connect_timeout": connect_timeout, "socket_timeout": socket_timeout,
        "socket_keepalive": True, "client_name": client_name, "protocol": 2,
        "retry": Retry(NoBackoff(), 0), "health_check_interval": 0,
    }
    if not server.tls:
        return redis.Connection(**kwargs)
    verify = tls_settings is None or tls_settings.verify
    return redis.SSLConnection(
        **kwargs,
        ssl_ca_certs=getattr(tls_settings, "ca_file", None),
        ssl_certfile=getattr(tls_settings, "cert_file", None),
        ssl_keyfile=getattr(tls_settings, "key_file", None),
        ssl_cert_reqs="required" if verify else "none",
        ssl_check_hostname=verify)


def open_first(servers: list[Server], deadline: float, connect_timeout: float,
               connection: ConnectionFactory) -> tuple[int, redis.Connection]:
    """Connects to the first server, in URL order, that answers a PING before ``deadline``.

    Returns:
        The server's index in ``servers`` and the connection.

    Raises:
        AuthenticationError: no server answered, and one refused the credentials.
        ConnectionFailed: no server answered; the message says why for each.
    """
    failures: list[str] = []
    refused: str | None = None
    for index, server in enumerate(servers):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(f"{server}: not tried, the timeout ran out")
            continue
        # Share what is left among the servers not tried yet, so that a black-holed address cannot use
        # up the whole timeout before the next one is tried.
        wait = min(remaining / (len(servers) - index), connect_timeout)
        candidate = connection(server, wait, wait)
        try:
            candidate.connect()
            candidate.send_command("PING")
            if not candidate.can_read(timeout=max(deadline - time.monotonic(), 0.0)):
                raise redis.TimeoutError("no answer to PING")
            candidate.read_response()
        except REFUSED as exc:
            candidate.disconnect()
            refused = refused or f"{server}: {exc}"
            failures.append(f"{server}: {exc}")
        except (redis.RedisError, OSError) as exc:
            candidate.disconnect()
            failures.append(f"{server}: {exc}")
        else:
            return index, candidate
    if refused is not None:
        raise AuthenticationError(PLUGIN, f"redis transport: credentials refused by {refused}", group=GROUP)
    raise ConnectionFailed(PLUGIN, "redis transport: no Redis server answered: " + "; ".join(failures),
                           group=GROUP)
