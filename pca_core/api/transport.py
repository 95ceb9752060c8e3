"""The Transport contract: publish/subscribe on a message broker."""

from __future__ import annotations

import abc
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pca_core.api.plugin import Plugin

if TYPE_CHECKING:
    from pca_core.config import TransportConfig

_log = logging.getLogger(__name__)


class QoS(enum.IntEnum):
    """Delivery guarantee of a publish or a subscription."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1


@dataclass(frozen=True, slots=True)
class Message:
    """A received message: its canonical topic and its payload bytes."""

    topic: str
    payload: bytes


Handler = Callable[[Message], None]
"""Receives each message of a subscription. Called by the transport; it must return quickly."""


class ConnectionState(enum.Enum):
    """The transport's connection as the core sees it."""

    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTED = "reconnected"
    CLOSED = "closed"


StateListener = Callable[[ConnectionState, "BaseException | None"], None]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription the transport keeps, and restores after every reconnect."""

    pattern: str
    handler: Handler
    qos: QoS


class Transport(Plugin, abc.ABC):
    """Publish/subscribe on a broker, in the canonical slash topic form.

    The contract a transport plugin provides:

    - Topics are canonical (``instance/status/InstanceStartedEvent``); patterns use ``+`` and ``#`` with
      MQTT meaning. The plugin maps them to its broker's naming.
    - Payloads are ``bytes``; anything else raises ``TypeError``.
    - :meth:`publish` at :attr:`QoS.AT_LEAST_ONCE` returns only after the broker accepted the message, and
      raises :class:`pca_core.api.errors.PublishTimeout` otherwise. It is thread safe.
    - Subscriptions are declarative: after any reconnect the plugin restores them without being asked.
    - Handlers are called with each message; the core's handlers only enqueue, so calling them from the
      client library's network thread is fine, but the plugin must not hold a lock the handler could need.
    - Reconnect and failover across ``config.urls`` are the plugin's job, with backoff and jitter, and every
      change is reported through :meth:`_set_state`.
    - :meth:`close` is idempotent and returns within its timeout even when the broker is gone.

    Args:
        config: the core's transport settings (urls, credentials, timeouts, TLS).
        options: the plugin's own options, validated against :attr:`Options`.
    """

    def __init__(self, config: TransportConfig, options: Any) -> None:
        self.config = config
        self.options = options
        self._state = ConnectionState.DISCONNECTED
        self._listeners: list[StateListener] = []
        self._listeners_lock = threading.Lock()

    @abc.abstractmethod
    def connect(self, timeout: float | None = None) -> None:
        """Connects to the first reachable broker of the URL list.

        Raises:
            ConnectionFailed: no broker could be reached within ``timeout``.
            AuthenticationError: a broker refused the credentials.
        """

    @abc.abstractmethod
    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Publishes one message; at QoS 1, returns once the broker accepted it.

        Raises:
            PublishTimeout: the broker did not accept the message within ``timeout``.
            TransportError: the transport is not connected or is closed.
        """

    @abc.abstractmethod
    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes ``handler`` to every topic matching ``pattern``, now and after every reconnect."""

    @abc.abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Disconnects and releases the client; idempotent, and bounded by ``timeout``."""

    @property
    def state(self) -> ConnectionState:
        """The latest connection state."""
        return self._state

    def add_state_listener(self, listener: StateListener) -> None:
        """Calls ``listener(state, error)`` on every connection-state change."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def _set_state(self, state: ConnectionState, error: BaseException | None = None) -> None:
        """Records a connection-state change and tells the listeners; for plugins to call."""
        self._state = state
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(state, error)
            except Exception:
                _log.exception("connection-state listener failed")
