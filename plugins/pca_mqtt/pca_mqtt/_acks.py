"""Acknowledging received messages once they were handled, in the order they arrived.

With a persistent session the client acknowledges by hand (paho's ``manual_ack``): the PUBACK of a QoS 1
message leaves only once its handlers are done with it, so a message the agent received but never
handled is still the broker's, and is delivered again to the next connection of the session.

MQTT 3.1.1 §4.6 wants the PUBACKs in the order the PUBLISHes arrived. Handlers may acknowledge in another
order (several subscriptions, another thread), so the queue keeps the messages in arrival order and sends
only the acknowledged ones at its head: a PUBACK waits for those of the messages before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import paho.mqtt.client as mqtt


class _Delivery:
    """A received message whose PUBACK is owed; :meth:`settle` is what its :class:`Message` acks call."""

    __slots__ = ("_wake", "acked", "mid", "qos")

    def __init__(self, mid: int, qos: int, wake: Callable[[], None]) -> None:
        self.mid = mid
        self.qos = qos
        self.acked = False
        self._wake = wake

    def settle(self) -> None:
        """Marks the message handled and wakes the network thread, which sends what is due; any thread."""
        self.acked = True  # one attribute store: no lock, so a dispatcher never waits on the network thread
        self._wake()


class AckQueue:
    """The PUBACKs owed on the current connection; only the network thread calls its methods.

    Args:
        wake: tells the network thread there is work for it; called by :meth:`_Delivery.settle` on the
            thread that acknowledges. It must be cheap and must not block.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._owed: deque[_Delivery] = deque()

    def track(self, mid: int, qos: int) -> Callable[[], None]:
        """Records a message just read; returns the settle function for its :class:`Message`."""
        delivery = _Delivery(mid, qos, self._wake)
        self._owed.append(delivery)
        return delivery.settle

    def release(self, client: mqtt.Client) -> None:
        """Queues the PUBACK of each acknowledged message that no unacknowledged one precedes."""
        owed = self._owed
        while owed and owed[0].acked:
            delivery = owed.popleft()
            client.ack(delivery.mid, delivery.qos)

    def reset(self) -> None:
        """Forgets what the previous connection owed: acknowledging those messages now does nothing.

        The broker delivers them again on the new connection if the session survived, each with its own
        acknowledgement; their packet ids may meanwhile name other messages.
        """
        self._owed = deque()
