"""The publisher connection: one redis-py connection, used under a lock by whichever thread publishes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from pca_core import AuthenticationError, ConnectionFailed, PublishTimeout, TransportError
from pca_redis._servers import GROUP, PLUGIN, REFUSED, ConnectionFactory, Server


class Publisher:
    """Publishes on the server the pub/sub connection uses; a publish returns once Redis answered.

    Args:
        servers: the servers of the URL list.
        active: the index of the server the pub/sub connection answered on last; the publisher follows it.
        connection: makes a connection to a server.
        publish_timeout: the socket timeout of the connection, ``transport.publish_timeout``.
        connect_timeout: the longest connection attempt, ``transport.connect_timeout``.
    """

    def __init__(self, servers: list[Server], active: Callable[[], int], connection: ConnectionFactory, *,
                 publish_timeout: float, connect_timeout: float) -> None:
        self._servers = servers
        self._active = active
        self._new_connection = connection
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._current: tuple[int, redis.Connection] | None = None

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        """One PUBLISH, retried once on a fresh connection when the kept one turns out to be stale.

        Raises:
            PublishTimeout: no answer, or not even the connection, within ``timeout``.
            ConnectionFailed: the server is unreachable.
            AuthenticationError: the server refused the credentials.
            TransportError: the server answered with an error.
        """
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            raise PublishTimeout(PLUGIN, f"redis transport: publish to {topic!r} timed out after {timeout} s "
                                         "waiting for the publisher connection", group=GROUP)
        try:
            self._publish(topic, payload, deadline, timeout)
        finally:
            self._lock.release()

    def close(self, deadline: float) -> None:
        """Closes the connection, waiting for a publish in progress until ``deadline`` at most.

        After the deadline the connection is closed without the lock, so that a publish stuck on a hung
        server fails at once.
        """
        locked = self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))
        try:
            self._drop()
        finally:
            if locked:
                self._lock.release()

    def _publish(self, topic: str, payload: bytes, deadline: float, timeout: float) -> None:
        while True:
            connection, server, reused = self._connection(deadline, timeout)
            try:
                connection.send_command("PUBLISH", topic, payload)
                if not connection.can_read(timeout=max(deadline - time.monotonic(), 0.0)):
                    raise redis.TimeoutError("no answer")
                connection.read_response()
                return
            except redis.TimeoutError as exc:
                self._drop()
                raise PublishTimeout(PLUGIN, f"redis transport: {server} did not answer PUBLISH to {topic!r} "
                                             f"within {timeout} s", group=GROUP) from exc
            except REFUSED as exc:
                self._drop()
                raise AuthenticationError(PLUGIN, f"redis transport: {server} refused to publish to "
                                                  f"{topic!r}: {exc}", group=GROUP) from exc
            except (redis.ConnectionError, OSError) as exc:
                self._drop()
                if not reused or time.monotonic() >= deadline:
                    raise ConnectionFailed(PLUGIN, f"redis transport: publish to {topic!r} failed, {server} "
                                                   f"is unreachable: {exc}", group=GROUP) from exc
            except redis.RedisError as exc:
                self._drop()
                raise TransportError(PLUGIN, f"redis transport: publish to {topic!r} failed on {server}: "
                                             f"{exc}", group=GROUP) from exc

    def _connection(self, deadline: float, timeout: float) -> tuple[redis.Connection, Server, bool]:
        """The connection to the active server, connecting it if needed; and whether it was kept."""
        index = self._active()
        server = self._servers[index]
        if self._current is not None and self._current[0] == index:
            return self._current[1], server, True
        self._drop()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PublishTimeout(PLUGIN, f"redis transport: no connection to {server} within {timeout} s",
                                 group=GROUP)
        connection = self._new_connection(server, min(remaining, self._connect_timeout),
                                          self._publish_timeout)
        try:
            connection.connect()
        except REFUSED as exc:
            connection.disconnect()
            raise AuthenticationError(PLUGIN, f"redis transport: credentials refused by {server}: {exc}",
                                      group=GROUP) from exc
        except redis.TimeoutError as exc:
            connection.disconnect()
            raise PublishTimeout(PLUGIN, f"redis transport: no connection to {server} within {timeout} s",
                                 group=GROUP) from exc
        except (redis.RedisError, OSError) as exc:
            connection.disconnect()
            raise ConnectionFailed(PLUGIN, f"redis transport: cannot publish, {server} is unreachable: {exc}",
                                   group=GROUP) from exc
        self._current = (index, connection)
        return connection, server, False

    def _drop(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current[1].disconnect()
