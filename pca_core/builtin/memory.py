"""The ``memory`` transport: in-process publish/subscribe with MQTT topic semantics.

Transports that join the same bus share one in-process broker, so an agent and a simulated control plane
in one process can talk to each other. A bus is named by ``memory://<bus>`` URLs in ``transport.urls``
(the first bus that is up when ``connect`` is called wins, in list order) or, when there are no URLs, by
the ``bus`` option. A transport stays on its bus: during an outage of that bus it reports ``LOST`` and
waits for the bus to come back. Delivery is synchronous: ``publish`` calls every matching subscriber's
handler before it returns, which is how a broker that has accepted a QoS 1 message behaves from the
publisher's point of view.
"""

from __future__ import annotations

import logging
import threading
import weakref

from pca_core.api.errors import ConnectionFailed, TransportError
from pca_core.api.plugin import Capability, ConfigIssue, PluginOptions
from pca_core.api.settings import TransportConfig
from pca_core.api.topics import topic_matches, validate_pattern, validate_topic
from pca_core.api.transport import ConnectionState, Handler, Message, QoS, Subscription, Transport

_log = logging.getLogger(__name__)


class MemoryOptions(PluginOptions):
    """Options of the ``memory`` transport.

    Attributes:
        bus: the name of the in-process broker to join when ``transport.urls`` is empty.
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

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = [(o, s) for o, s in self._subscriptions if s is not subscription]

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


SCHEME = "memory://"
"""The URL scheme of the memory transport: ``memory://<bus>``."""


def bus_name(url: str) -> str:
    """The bus a ``memory://<bus>`` URL names.

    Raises:
        ValueError: ``url`` is not a ``memory://`` URL, or names no bus.
    """
    scheme, sep, name = url.partition("://")
    if not sep or scheme.lower() != "memory" or not name:
        raise ValueError(f"not a memory transport URL: {url!r} (expected {SCHEME}<bus>)")
    return name


def _bus(name: str) -> _Bus:
    with _buses_lock:
        bus = _buses.get(name)
        if bus is None:
            bus = _buses[name] = _Bus()
        return bus


class MemoryTransport(Transport):
    """An in-process transport for tests and the demo; it passes the same conformance suite."""

    api_version = (2, 0)
    capabilities = frozenset({Capability.QOS1, Capability.WILDCARDS, Capability.CONNECTION_STATE})
    Options = MemoryOptions

    def __init__(self, config: TransportConfig, options: MemoryOptions) -> None:
        super().__init__(config, options)
        self._bus_names = tuple(bus_name(url) for url in config.urls) or (options.bus,)
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._bus: _Bus | None = None
        self._bus_name = self._bus_names[0]
        self._closed = False

    @classmethod
    def check_config(cls, config: TransportConfig, options: MemoryOptions) -> list[ConfigIssue]:
        """Every URL must be ``memory://<bus>``."""
        issues = []
        for i, url in enumerate(config.urls):
            try:
                bus_name(url)
            except ValueError as exc:
                issues.append(ConfigIssue(f"urls[{i}]", str(exc)))
        return issues

    def connect(self, timeout: float | None = None) -> None:
        """Joins the first bus of the list that is up, and restores the subscriptions made so far."""
        with self._lock:
            if self._closed:
                raise TransportError("memory", "memory transport: connect after close")
            if self._bus is not None:
                return
            for name in self._bus_names:  # failover: the first bus that is up, in list order
                bus = _bus(name)
                if bus.available:
                    break
            else:
                down = ", ".join(repr(n) for n in self._bus_names)
                raise ConnectionFailed("memory", f"memory bus {down} is down" if len(self._bus_names) == 1
                                       else f"every memory bus is down: {down}")
            self._bus, self._bus_name = bus, name
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
            raise ConnectionFailed("memory", f"memory bus {self._bus_name!r} is down")
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

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends the subscription on the bus at once; idempotent."""
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            bus = self._bus
        if bus is not None:
            bus.remove(subscription)

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
