"""The network step: one wait for traffic or a wake-up, then reading, handing over, acknowledging, writing.

The transport drives paho through its interface for external event loops (``loop_read``, ``loop_write``,
``loop_misc``, ``want_write`` and the write-registration callback) around a ``select()`` of its own, which
also watches a socket pair. Any thread can end the wait cheaply through that pair: ``close()``, a publish
or subscribe queued by another thread, a handled message whose PUBACK is due. Wake-ups are coalesced: one
byte is written until the network thread has taken it, however many threads ask meanwhile, so a
dispatcher that acknowledges a batch of messages wakes the network thread once, not once per message.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from pca_core.api import Message
from pca_mqtt._acks import AckQueue
from pca_mqtt._routing import Received

BATCH = 256
"""Messages read back to back before they are handed to the handlers (see :meth:`Pump.step`)."""
_AWAIT_STEP = 0.1  # seconds of one step while a handler waits for its PUBACK (bounds how late close is seen)


class Pump:
    """Moves one paho client's traffic; :meth:`step` runs on the network thread, :meth:`wake` on any.

    Args:
        client: the paho client; the pump sets its message and write-registration callbacks.
        deliver: hands a batch of received messages to the handlers, in order.
        manual_ack: acknowledge QoS 1 messages once handled (the client was made with ``manual_ack``);
            else paho acknowledges them on receipt and messages carry no settle function.
    """

    def __init__(self, client: mqtt.Client, deliver: Callable[[list[Received]], None], *,
                 manual_ack: bool) -> None:
        self._client = client
        self._deliver = deliver
        self._manual_ack = manual_ack
        self.acks = AckQueue(self.wake)
        self._inbox: list[Received] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._woken = False  # a wake-up byte is on its way; further wake() calls need not write one
        self._network_thread: int | None = None
        client.on_message = self._on_message
        client.on_socket_register_write = self._on_register_write

    def bind(self) -> None:
        """Makes the calling thread the network thread: its own wake-ups are skipped, it is awake anyway."""
        self._network_thread = threading.get_ident()

    def wake(self) -> None:
        """Ends the network thread's current or next wait; cheap, never blocks, callable from any thread."""
        if self._woken or threading.get_ident() == self._network_thread:
            return
        self._woken = True
        # A full pair means the thread has bytes to read anyway; a closed one, that the transport closed.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def close(self) -> None:
        """Releases the socket pair; once the network thread has ended."""
        self._wake_r.close()
        self._wake_w.close()

    def step(self, timeout: float, *, hand_over: bool = True) -> MQTTErrorCode:
        """One network step: waits up to ``timeout`` for traffic, reads what is ready, then hands it over.

        Messages that arrive back to back (up to :data:`BATCH`) are read first and handed to the handlers
        together. The core's handlers put them on the dispatcher's queue; done one by one between socket
        calls, each put would wake the dispatcher thread and trade the GIL with it at the next system
        call, which halves the throughput. Order is kept, and a message is handed over before the next
        wait: last, after the step's writes, so that the network thread goes to its wait (and lets the
        GIL go) as soon as it has woken the dispatcher, which then seldom waits for the GIL as well.
        What was read before a failure is still handed over. PUBACKs that became due are queued before
        the wait and again before writing.

        Args:
            timeout: the longest wait, in seconds.
            hand_over: False keeps what is read for the next step that hands over (a handler waiting on
                the network thread for its own publish must not be called again meanwhile).

        Returns:
            paho's result: ``MQTT_ERR_SUCCESS``, or why the connection is unusable.
        """
        client = self._client
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        self.acks.release(client)
        # TLS: bytes already decrypted wait in the SSL object, where select() cannot see them.
        pending = getattr(sock, "pending", None)
        buffered = pending is not None and pending() > 0
        try:
            readable, _, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [],
                                                  [], 0.0 if buffered else timeout)
        except (OSError, ValueError, TypeError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST  # the socket was closed under us
        if self._wake_r in readable:
            self._take_wake_up()
        rc = self._read() if buffered or sock in readable else MQTTErrorCode.MQTT_ERR_SUCCESS
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.acks.release(client)
            if client.want_write():
                rc = client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        if hand_over and self._inbox:
            self._hand_over()
        return rc

    def await_publish(self, info: mqtt.MQTTMessageInfo, timeout: float, give_up: Callable[[], bool]) -> bool:
        """Steps until the broker acknowledged ``info``: for a handler publishing at QoS 1, on this thread.

        What is read meanwhile waits for the next hand-over, so that the handler is not called again.
        """
        deadline = time.monotonic() + timeout
        while not info.is_published() and self._client.socket() is not None and not give_up():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.step(min(left, _AWAIT_STEP), hand_over=False)
        return info.is_published()

    def forget_connection(self) -> None:
        """On a new connection: what the previous one owed is not sent (see :meth:`AckQueue.reset`)."""
        self.acks.reset()

    # -- on the network thread ------------------------------------------------------------------------

    def _read(self) -> MQTTErrorCode:
        client, inbox = self._client, self._inbox
        while True:
            before = len(inbox)
            rc = client.loop_read()  # one packet; MQTT_ERR_SUCCESS also when nothing was there
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or len(inbox) == before or len(inbox) >= BATCH:
                return rc

    def _hand_over(self) -> None:
        messages, self._inbox = self._inbox, []
        self._deliver(messages)

    def _take_wake_up(self) -> None:
        # Read first, then clear the flag: a wake() after the read writes a new byte, one before it had
        # its work queued before this step looks for work.
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        self._woken = False

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        settle = None
        if self._manual_ack and message.qos > 0:
            settle = self.acks.track(message.mid, message.qos)
        properties = message.properties  # MQTT 5 only: which subscriptions this copy is for
        ids = getattr(properties, "SubscriptionIdentifier", ()) if properties is not None else ()
        self._inbox.append((Message(message.topic, message.payload, settle), tuple(ids)))

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # A packet was queued with nothing else waiting to be written: the network thread's select() must
        # watch for writability, so wake it (paho would otherwise write on the caller's thread).
        self.wake()
