"""The transport's subscriptions, and keeping the broker's in step with them: SUBSCRIBE and UNSUBSCRIBE."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pca_core.api import Subscription
from pca_mqtt._routing import Router, Routes, subscription_id

_log = logging.getLogger("pca_mqtt")


@dataclass
class SubAck:
    """A SUBSCRIBE waiting for the broker's SUBACK; ``event`` is set when it came or the connection ended."""

    event: threading.Event = field(default_factory=threading.Event)
    refused: list[str] = field(default_factory=list)


class Subscriptions:
    """What the transport is subscribed to, and what the broker must be told about it.

    Every change goes through one lock that is also held while the SUBSCRIBE or UNSUBSCRIBE packet is
    queued, so the packets reach the broker in the order of the changes; the lock is never held while a
    handler runs or while anyone waits.

    Over MQTT 5 each pattern has a SUBSCRIBE of its own, which names it with a Subscription Identifier
    (see :mod:`pca_mqtt._routing`), unless the broker said it does not support them.

    Args:
        client: the paho client.
        router: whose routes it keeps.
        v5: the client speaks MQTT 5.
    """

    def __init__(self, client: mqtt.Client, router: Router, *, v5: bool) -> None:
        self._client = client
        self._router = router
        self._v5 = v5
        self._with_ids = v5
        self._lock = threading.Lock()
        self._online = False  # connected, with the subscriptions restored: changes are sent at once
        self._subacks: dict[int, SubAck] = {}
        # Patterns no subscription uses that the broker may still hold (a persistent session), with the
        # packet id of the UNSUBSCRIBE sent on this connection (None: not sent yet).
        self._stale: dict[str, int | None] = {}

    @property
    def patterns(self) -> int:
        """How many patterns are subscribed to (several subscriptions may share one)."""
        return len(self._router.routes.patterns())

    def add(self, subscription: Subscription) -> SubAck | None:
        """Adds a subscription; sends its SUBSCRIBE when connected, and returns what waits for the SUBACK."""
        with self._lock:
            routes = self._router.routes
            self._router.routes = Routes((*routes.subscriptions, subscription))
            self._stale.pop(subscription.pattern, None)
            if not self._online:
                return None  # sent with the others on the next connect
            acks = self._send_subscribe({subscription.pattern: int(subscription.qos)})
            return acks[0] if acks else None

    def remove(self, subscription: Subscription) -> bool:
        """Ends a subscription; the broker is unsubscribed from a pattern no other subscription uses.

        Returns:
            False when the subscription was not (or no longer) there.
        """
        with self._lock:
            routes = self._router.routes
            if not any(s is subscription for s in routes.subscriptions):
                return False
            remaining = Routes(tuple(s for s in routes.subscriptions if s is not subscription))
            self._router.routes = remaining
            pattern = subscription.pattern
            if not remaining.uses(pattern):
                self._stale[pattern] = None
                if self._online:
                    self._send_unsubscribe(pattern)
        return True

    def connected(self, session_present: bool, *, ids_available: bool = True) -> list[SubAck]:
        """On a new connection (network thread): subscribes to every pattern in use.

        A persistent session that the broker kept may still hold patterns unsubscribed while the
        connection was down; they are unsubscribed now.

        Args:
            session_present: the broker kept the session (CONNACK).
            ids_available: the broker supports Subscription Identifiers (an MQTT 5 CONNACK property).

        Returns:
            What waits for the SUBACKs.
        """
        with self._lock:
            self._online = True
            self._with_ids = self._v5 and ids_available
            if not session_present:
                self._stale.clear()  # the broker holds nothing of ours
            for pattern in self._stale:
                self._send_unsubscribe(pattern)
            patterns = self._router.routes.patterns()
            return self._send_subscribe(patterns) if patterns else []

    def disconnected(self) -> None:
        """On the loss of the connection (network thread): releases whoever waits for a SUBACK."""
        with self._lock:
            self._online = False
            pending, self._subacks = self._subacks, {}
            for pattern in self._stale:
                self._stale[pattern] = None
        for ack in pending.values():
            ack.event.set()

    # -- paho callbacks (network thread) --------------------------------------------------------------

    def on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                     properties: object) -> None:
        """SUBACK: wakes its waiter, telling it what the broker refused."""
        with self._lock:
            ack = self._subacks.pop(mid, None)
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            _log.error("mqtt: the broker refused a subscription: %s", ", ".join(refused))
        if ack is not None:
            ack.refused.extend(refused)
            ack.event.set()

    def on_unsubscribe(self, client: mqtt.Client, userdata: object, mid: int,
                       reason_codes: list[ReasonCode], properties: object) -> None:
        """UNSUBACK: the broker no longer holds the pattern."""
        with self._lock:
            for pattern, sent in list(self._stale.items()):
                if sent == mid:
                    del self._stale[pattern]

    # -- with the lock held ---------------------------------------------------------------------------

    def _send_subscribe(self, patterns: dict[str, int]) -> list[SubAck]:
        if self._with_ids:  # one identifier per SUBSCRIBE packet, so one packet per pattern
            packets = [([item], _identified(item[0])) for item in patterns.items()]
        else:
            packets = [(list(patterns.items()), None)]
        acks = []
        for topics, properties in packets:
            rc, mid = self._client.subscribe(topics, properties=properties)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                break  # the connection just went; the next connect sends them
            ack = self._subacks[mid] = SubAck()
            acks.append(ack)
        return acks

    def _send_unsubscribe(self, pattern: str) -> None:
        rc, mid = self._client.unsubscribe(pattern)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._stale[pattern] = mid


def _identified(pattern: str) -> Properties:
    properties = Properties(PacketTypes.SUBSCRIBE)
    properties.SubscriptionIdentifier = subscription_id(pattern)
    return properties
