"""Receiving on the container thread: a receiver link per subscription, hand-over, settlement, credit."""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import Delivery, Endpoint
from proton import Message as AmqpMessage
from proton.reactor import Container

from pca_amqp.addresses import Addressing
from pca_core.api import Message, Subscription

_log = logging.getLogger("pca_amqp")


@dataclass(eq=False)
class Receiving:
    """A subscription on the container thread: its source address and its current receiver link.

    Attributes:
        attached: set once the broker attached the link, or refused it (then ``refusal`` says why).
        exact: the pattern when it has no wildcard: the topic of every message it receives.
        credit_due: messages settled since the link last got credit back.
    """

    subscription: Subscription
    source: str
    link: Any = None
    attached: threading.Event = field(default_factory=threading.Event)
    refusal: str | None = None
    exact: str | None = None
    credit_due: int = 0

    def __post_init__(self) -> None:
        pattern = self.subscription.pattern
        if "+" not in pattern and "#" not in pattern:
            self.exact = pattern

    def refused(self, reason: str) -> None:
        """Records the broker's refusal and wakes a ``subscribe()`` waiting for the attach."""
        self.link = None
        self.refusal = reason
        self.attached.set()


class Receivers:
    """Every subscription, and the receiver links of the current connection.

    A received message becomes a :class:`Message` at once, but reaches its handler in :meth:`hand_over`,
    with the others that one read brought. Its ``ack`` posts :meth:`_settle` to the container thread:
    the delivery is accepted, and the link gets the credit back in :meth:`grant_credit`, once per batch.

    Args:
        container: the proton Container.
        session: gives the session new links open on.
        addressing: topics as addresses.
        post: runs a call on the container thread (``Calls.post``).
        prefetch: ``options.prefetch``, each link's credit.
        max_message_size: ``transport.max_message_size``, announced on each link.

    Attributes:
        active: the subscriptions not ended; callers change it, a delivery checks it first.
    """

    def __init__(self, container: Container, session: Callable[[], Any], addressing: Addressing,
                 post: Callable[[Callable[[], None]], None], prefetch: int, max_message_size: int) -> None:
        self.active: set[Subscription] = set()
        self._container = container
        self._session = session
        self._addressing = addressing
        self._post = post
        self._prefetch = prefetch
        self._max_message_size = max_message_size
        self._receiving: dict[Subscription, Receiving] = {}
        self._received: list[tuple[Subscription, Message]] = []
        self._credit_due: set[Receiving] = set()
        self._generation = 0  # a settle posted for an earlier connection is dropped
        self._unrouted_logged = False

    def __len__(self) -> int:
        return len(self._receiving)

    # -- links ------------------------------------------------------------------------------------------

    def add(self, receiving: Receiving, *, open_now: bool) -> None:
        """Adds a subscription; its link opens now if ``open_now``, else on the next connection."""
        self._receiving[receiving.subscription] = receiving
        if open_now:
            self._open(receiving)

    def remove(self, subscription: Subscription) -> None:
        """Ends a subscription: its link closes (the broker drops its queue)."""
        receiving = self._receiving.pop(subscription, None)
        if receiving is not None and receiving.link is not None:
            receiving.link.close()
            receiving.link = None

    def open_all(self) -> set[Receiving]:
        """Opens a link for every active subscription on a new connection; returns them."""
        opened = {r for r in self._receiving.values() if r.subscription in self.active}
        for receiving in opened:
            self._open(receiving)
        return opened

    def _open(self, receiving: Receiving) -> None:
        link = self._container.create_receiver(self._session(), source=receiving.source,
                                               name=f"pca-{uuid.uuid4().hex[:16]}")
        link.max_message_size = self._max_message_size
        link.pca_receiving = receiving
        link.flow(self._prefetch)
        receiving.link = link

    def attached(self, link: Any) -> Receiving | None:
        """The broker attached ``link``: its subscription, unless the attach has no source (a refusal)."""
        receiving = getattr(link, "pca_receiving", None)
        if receiving is None or receiving.link != link or link.remote_source.address is None:
            return None  # an attach without a source is refused: its detach with the reason follows
        receiving.refusal = None
        receiving.attached.set()
        return receiving

    def refused(self, link: Any, reason: str) -> Receiving | None:
        """The broker refused ``link`` (a detach with an error): its subscription, logged once."""
        receiving = getattr(link, "pca_receiving", None)
        if receiving is None or receiving.link != link:
            return None
        receiving.refused(reason)
        _log.error("amqp: the broker refused the subscription to %r (%s): %s", receiving.subscription.pattern,
                   receiving.source, reason)
        return receiving

    def closed(self, link: Any) -> Receiving | None:
        """The broker closed ``link`` without an error: its subscription, to attach again later."""
        receiving = getattr(link, "pca_receiving", None)
        if receiving is None or receiving.link != link:
            return None
        receiving.link = None
        _log.warning("amqp: the broker closed the subscription to %r; attaching it again",
                     receiving.subscription.pattern)
        return receiving

    def reattach(self, receiving: Receiving) -> None:
        """Opens ``receiving``'s link again, if it is still wanted and has none; only while connected."""
        if self._receiving.get(receiving.subscription) is receiving and receiving.link is None:
            self._open(receiving)

    def session_ended(self, reason: str) -> list[Receiving]:
        """The broker ended the session: reopens the attached links, drops the subscriptions refused.

        A link the broker had attached opens again on a new session; one still waiting for its attach was
        the refused one, and its subscription is dropped. Returns those dropped.
        """
        dropped = []
        for receiving in list(self._receiving.values()):
            link, receiving.link = receiving.link, None
            if link is None:
                continue
            if link.state & Endpoint.REMOTE_ACTIVE:
                self._open(receiving)
                continue
            del self._receiving[receiving.subscription]
            self.active.discard(receiving.subscription)
            receiving.refused(reason)
            _log.error("amqp: the broker refused the subscription to %r (%s): %s; it is dropped",
                       receiving.subscription.pattern, receiving.source, reason)
            dropped.append(receiving)
        return dropped

    def forget_links(self) -> None:
        """The connection is gone: its links with it, and the settles posted for its deliveries."""
        self._generation += 1
        self._credit_due.clear()
        for receiving in self._receiving.values():
            receiving.link = None
            receiving.credit_due = 0

    # -- messages ---------------------------------------------------------------------------------------

    def received(self, link: Any, delivery: Any, message: AmqpMessage) -> None:
        """A message arrived on ``link``: kept for :meth:`hand_over`, or dropped (and settled)."""
        receiving = getattr(link, "pca_receiving", None)
        subscription = receiving.subscription if receiving is not None else None
        if subscription is None or subscription not in self.active:
            _accept(delivery)  # unsubscribed: dropped, as the contract says
            return
        topic = receiving.exact or self._addressing.topic(subscription.pattern, message.address,
                                                          message.subject)
        payload = _payload(message)
        if topic is None or payload is None:
            _accept(delivery)
            if not self._unrouted_logged:
                self._unrouted_logged = True
                what = "no routing key (no address or subject)" if topic is None else (
                    f"a body of type {type(message.body).__name__}, neither binary nor text")
                _log.warning("amqp: dropped a message received through %r with %s; logged once",
                             subscription.pattern, what)
            return
        # receiving.link is the object _settle compares: a later wrapper of the same link would be another.
        settle = functools.partial(self._settle, self._generation, delivery, receiving, receiving.link)
        self._received.append((subscription, Message(topic, payload, functools.partial(self._post, settle))))

    def hand_over(self) -> None:
        """Calls the handlers with the messages received since the last hand-over, in arrival order.

        One call per batch rather than per delivery: proton's C calls release the GIL, so a handler that
        wakes another thread (the core's dispatcher) per message would trade the GIL with it per message.
        At most ``prefetch`` messages per subscription are unsettled, so a batch is bounded by that too.
        """
        received, self._received = self._received, []
        active = self.active
        for subscription, message in received:
            if subscription not in active:
                message.ack()  # unsubscribed since it arrived: dropped, and settled
                continue
            try:
                subscription.handler(message)
            except Exception:
                _log.exception("amqp: the handler of %r failed", subscription.pattern)
                message.ack()

    def _settle(self, generation: int, delivery: Any, receiving: Receiving, link: Any) -> None:
        if generation != self._generation:
            return  # its connection is gone, and the broker requeued or dropped it
        delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        if receiving.link is link:  # not closed (unsubscribed) or replaced since
            receiving.credit_due += 1
            self._credit_due.add(receiving)

    def grant_credit(self) -> None:
        """Gives each link back, in one flow frame, a credit per message settled since the last call."""
        due, self._credit_due = self._credit_due, set()
        for receiving in due:
            credit, receiving.credit_due = receiving.credit_due, 0
            if receiving.link is not None and receiving.link.state & Endpoint.LOCAL_ACTIVE:
                receiving.link.flow(credit)


def _accept(delivery: Any) -> None:
    delivery.update(Delivery.ACCEPTED)
    delivery.settle()
    link = delivery.link
    if link.state & Endpoint.LOCAL_ACTIVE:
        link.flow(1)


def _payload(message: AmqpMessage) -> bytes | None:
    """The body as bytes: a data section or binary value as it is, a string as UTF-8; else None."""
    body = message.body
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, memoryview | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return None
