"""The Transport contract: publish/subscribe on a message broker."""

from __future__ import annotations

import abc
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pca_core.api.plugin import Capability, Plugin
from pca_core.api.settings import TransportConfig

_log = logging.getLogger(__name__)


class QoS(enum.IntEnum):
    """Delivery guarantee of a publish or a subscription."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1


@dataclass(slots=True)
class Message:
    """A received message: its canonical topic, its payload bytes, and how to acknowledge it.

    Attributes:
        topic: the canonical slash topic it was published on.
        payload: the body, exactly as published.
        settle: set by the transport: what :meth:`ack` does (an AMQP disposition, a Kafka offset commit,
            an MQTT PUBACK); None when the protocol needs nothing. Handlers call :meth:`ack`, not this.
    """

    topic: str
    payload: bytes
    settle: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Tells the transport the message was handled, so the broker may forget it; later calls do nothing.

        The core calls it on its dispatcher thread once the handler returned (or failed: a message that
        cannot be handled is not worth a redelivery). A message never acknowledged may be delivered again
        by a transport with :attr:`Capability.REDELIVERY`, after a reconnect or a restart. Each copy a
        transport hands to a handler is acknowledged by that one subscriber, so calls never race; calls
        from several threads at once on one copy are not supported.
        """
        settle, self.settle = self.settle, None
        if settle is not None:
            settle()


def settle_once_all_acked(settle: Callable[[], None], count: int) -> Callable[[], None]:
    """For a message delivered to ``count`` handlers: a settle function that settles on the last ack.

    Give each of the ``count`` :class:`Message` copies the returned function; ``settle`` runs when every
    copy has been acknowledged. Thread safe.
    """
    if count <= 1:
        return settle
    lock = threading.Lock()
    left = [count]

    def one_acked() -> None:
        with lock:
            left[0] -= 1
            done = left[0] == 0
        if done:
            settle()

    return one_acked


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


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    """A subscription the transport keeps and restores after every reconnect, until it is unsubscribed."""

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
      raises :class:`~pca_core.api.PublishTimeout` (or another :class:`~pca_core.api.TransportError`)
      otherwise. It is thread safe.
    - Subscriptions are declarative: after any reconnect the plugin restores them without being asked.
      :meth:`unsubscribe` ends one.
    - Each received message reaches every matching subscription's handler as a :class:`Message` whose
      :meth:`Message.ack` the subscriber calls once it handled it; a plugin that can settle with the broker
      after handling (AMQP dispositions, Kafka offset commits, MQTT PUBACKs) does it then, not on receipt.
      Handlers may be called on the client library's network thread: the core's only enqueue. The plugin
      must not hold a lock that a handler (or ``ack``, from another thread) could need.
    - Connection state: :meth:`_set_state` reports ``CONNECTED`` once :meth:`connect` succeeded and
      ``CLOSED`` once :meth:`close` ran. A plugin whose client library tells it about lost and restored
      connections also reports ``LOST`` and ``RECONNECTED`` and declares
      :attr:`Capability.CONNECTION_STATE`; the core never depends on those two.
    - Reconnect and failover across ``config.urls`` are the plugin's job, with the delays of
      :meth:`TransportConfig.backoff` (exponential, full jitter).
    - :meth:`close` is idempotent and returns within its timeout even when the broker is gone.

    Args:
        config: the core's transport settings (urls, credentials, timeouts, TLS), already checked by
            :meth:`check_config`.
        options: the plugin's own options, validated against :attr:`Options`.
    """

    known_capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.QOS1, Capability.WILDCARDS, Capability.TLS, Capability.PERSISTENT_SESSION,
        Capability.CONNECTION_STATE, Capability.REDELIVERY})

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
    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends a subscription made by :meth:`subscribe`; idempotent.

        Once it returns, no delivery that starts afterwards calls the handler, not even of a message the
        broker had already sent (a delivery already under way on another thread may finish).
        """

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
