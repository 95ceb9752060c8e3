"""The ``memory`` transport: in-process publish/subscribe with MQTT topic semantics.

Transports created with the same ``bus`` option share one in-process broker, so an agent and a simulated
control plane in one process can talk to each other. Delivery is synchronous: ``publish`` calls every
matching subscriber's handler before it returns, which is how a broker that has accepted a QoS 1 message
behaves from the publisher's point of view.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from pca_core.errors import ConnectionFailed, TransportError
from pca_core.plugin import PluginOptions
from pca_core.topics import topic_matches, validate_pattern, validate_topic
from pca_core.transport import ConnectionState, Handler, Message, QoS, Subscription, Transport

_log = logging.getLogger(__name__)


class MemoryOptions(PluginOptions):
    """Options of the ``memory`` transport.

    Attributes:
        bus: the name of the in-process broker to join.
    """

    bus: str = "default"


class _Bus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: list[tuple[object, Subscription]] = []
        self.members: weakref.WeakSet[MemoryTransport] = weakref.WeakSet()
        self.available = True

    def add(self, owner: object, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.append((owner, subscription))

    def remove_owner(self, owner: object) -> None:
        with self._lock:
            self._subscriptions = [(o, s) for o, s in self._subscriptions if o is not owner]
        self.members.discard(owner)  # type: ignore[arg-type]

    def deliver(self, message: Message) -> None:
        with self._lock:
            targets = [s for _, s in self._subscriptions if topic_matches(s.pattern, message.topic)]
        # Handlers run outside the lock, so a handler may publish or subscribe in turn.
        for subscription in targets:
            try:
                subscription.handler(message)
            except Exception:
                _log.exception("memory transport: handler for %r failed on %s", subscription.pattern,
                               message.topic)


_buses: weakref.WeakValueDictionary[str, _Bus] = weakref.WeakValueDictionary()
_buses_lock = threading.Lock()
_down: dict[str, _Bus] = {}  # a bus that is down stays down even while no transport holds it


def set_available(bus: str, available: bool) -> None:
    """Takes the in-process broker ``bus`` down or brings it back: a broker outage, for tests and demos.

    While it is down, publishing raises :class:`ConnectionFailed` and nothing is delivered; every
    connected transport on it reports ``LOST``, then ``RECONNECTED`` (its subscriptions intact) when it
    comes back.
    """
    target = _bus(bus)
    if target.available == available:
        return
    target.available = available
    if available:
        _down.pop(bus, None)
    else:
        _down[bus] = target
    state = ConnectionState.RECONNECTED if available else ConnectionState.LOST
    error = None if available else ConnectionFailed("memory", f"memory bus {bus!r} is down")
    for transport in list(target.members):
        transport._set_state(state, error)


def _bus(name: str) -> _Bus:
    with _buses_lock:
        bus = _buses.get(name)
        if bus is None:
            bus = _buses[name] = _Bus()
        return bus


class MemoryTransport(Transport):
    """An in-process transport for tests and the demo; it passes the same conformance suite."""

    capabilities = frozenset({"qos1", "wildcards"})
    Options = MemoryOptions

    def __init__(self, config: Any, options: MemoryOptions) -> None:
        super().__init__(config, options)
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._bus: _Bus | None = None
        self._closed = False

    def connect(self, timeout: float | None = None) -> None:
        """Joins the bus and restores the subscriptions made so far."""
        with self._lock:
            if self._closed:
                raise TransportError("memory", "memory transport: connect after close")
            if self._bus is not None:
                return
            bus = _bus(self.options.bus)
            if not bus.available:
                raise ConnectionFailed("memory", f"memory bus {self.options.bus!r} is down")
            self._bus = bus
            for subscription in self._subscriptions:
                bus.add(self, subscription)
            bus.members.add(self)
        self._set_state(ConnectionState.CONNECTED)

    def publish(self, topic: str, payload: bytes, *, qos: QoS = QoS.AT_LEAST_ONCE,
                timeout: float | None = None) -> None:
        """Delivers to every matching subscription on the bus before returning."""
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        validate_topic(topic)
        bus = self._bus
        if bus is None:
            raise TransportError("memory", "memory transport: publish while not connected")
        if not bus.available:
            raise ConnectionFailed("memory", f"memory bus {self.options.bus!r} is down")
        bus.deliver(Message(topic, payload))

    def subscribe(self, pattern: str, handler: Handler, *, qos: QoS = QoS.AT_LEAST_ONCE) -> Subscription:
        """Subscribes now if connected, and on every later connect."""
        validate_pattern(pattern)
        subscription = Subscription(pattern, handler, QoS(qos))
        with self._lock:
            self._subscriptions.append(subscription)
            if self._bus is not None:
                self._bus.add(self, subscription)
        return subscription

    def close(self, timeout: float | None = None) -> None:
        """Leaves the bus; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            bus, self._bus = self._bus, None
        if bus is not None:
            bus.remove_owner(self)
        self._set_state(ConnectionState.CLOSED)
