"""Routing received messages to the handlers of the subscriptions they match, on the client.

Over MQTT 5 a broker may send a message once per subscription it matches (Mosquitto does), each copy
naming the subscription in a Subscription Identifier; over 3.1.1 it sends one copy. Either way each
handler gets the message once: a copy with identifiers goes to the subscriptions they name, a copy without
to every subscription whose pattern matches the topic.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pca_core.api import Handler, Message, Subscription, settle_once_all_acked, topic_matches

_log = logging.getLogger("pca_mqtt")

_CACHE_SIZE = 1024  # topics whose handlers are remembered; the Stratos topics number a few dozen
_MAX_ID = 268_435_455  # the largest Subscription Identifier (a variable byte integer)

Received = tuple[Message, tuple[int, ...]]
"""A received message and the Subscription Identifiers its copy carries (none over MQTT 3.1.1)."""


def subscription_id(pattern: str) -> int:
    """The Subscription Identifier of ``pattern``.

    It is the same in every process, so that the messages a kept session delivers before the
    subscriptions are renewed still name the right pattern.
    """
    return zlib.crc32(pattern.encode()) % _MAX_ID + 1


@dataclass(frozen=True)
class Routes:
    """The subscriptions and, per topic seen, the handlers it reaches; replaced whole on every change.

    The network thread reads whichever routes are current, without a lock: a subscription added or ended
    takes effect from the next message on.
    """

    subscriptions: tuple[Subscription, ...] = ()
    cache: dict[tuple[str, tuple[int, ...]], tuple[Handler, ...]] = field(default_factory=dict)

    def handlers(self, topic: str, ids: tuple[int, ...] = ()) -> tuple[Handler, ...]:
        """The handlers of the subscriptions a copy reaches, in subscription order."""
        key = (topic, ids)
        handlers = self.cache.get(key)
        if handlers is None:
            handlers = tuple(s.handler for s in self.subscriptions if topic_matches(s.pattern, topic)
                             and (not ids or subscription_id(s.pattern) in ids))
            if len(self.cache) < _CACHE_SIZE:
                self.cache[key] = handlers
        return handlers

    def patterns(self) -> dict[str, int]:
        """Each pattern in use, with the highest QoS asked for it."""
        patterns: dict[str, int] = {}
        for subscription in self.subscriptions:
            patterns[subscription.pattern] = max(patterns.get(subscription.pattern, 0), int(subscription.qos))
        return patterns

    def uses(self, pattern: str) -> bool:
        """Whether a subscription has ``pattern``."""
        return any(s.pattern == pattern for s in self.subscriptions)


class Router:
    """Hands each received message to the handlers of the subscriptions it reaches, once each.

    Each handler gets its own :class:`Message`, so that each acknowledges for itself; the transport's
    settle function runs once all of them did. A message that no subscription wants any more (one that
    was in flight when its subscription ended) is acknowledged at once.
    """

    def __init__(self) -> None:
        self.routes = Routes()

    def deliver(self, received: Iterable[Received]) -> None:
        """Calls the handlers of each message, in order; a handler that raises does not stop the others."""
        for message, ids in received:
            # The routes are read per message: once unsubscribe() returned, no later message reaches it.
            handlers = self.routes.handlers(message.topic, ids)
            if not handlers:
                message.ack()
                continue
            if len(handlers) == 1 or message.settle is None:
                copies = [message] * len(handlers)
            else:
                settle = settle_once_all_acked(message.settle, len(handlers))
                copies = [Message(message.topic, message.payload, settle) for _ in handlers]
            for handler, copy in zip(handlers, copies, strict=True):
                try:
                    handler(copy)
                except Exception:
                    _log.exception("mqtt: a handler failed on a message from %s", copy.topic)
                    copy.ack()  # nobody else will; acknowledging twice does nothing
