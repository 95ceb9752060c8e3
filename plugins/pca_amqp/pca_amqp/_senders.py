"""Publishing on the container thread: a sender link per address, and each message's disposition."""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from proton import Endpoint
from proton import Message as AmqpMessage
from proton.reactor import Container

from pca_amqp._errors import NAME
from pca_amqp._jobs import Publish
from pca_core.api import PcaError, TransportError


class Senders:
    """The sender links of the current connection: one per address, opened on first use.

    A message waits in its address's backlog until the link has credit; a QoS 1 one then waits for the
    broker's disposition, which :meth:`outcome` reports to its publisher. At most ``max_senders`` links
    stay open: beyond that the least recently used idle one is closed.

    Args:
        container: the proton Container.
        session: gives the session new links open on.
        max_senders: ``options.max_senders``.
    """

    def __init__(self, container: Container, session: Callable[[], Any], max_senders: int) -> None:
        self._container = container
        self._session = session
        self._max = max_senders
        self._links: OrderedDict[str, Any] = OrderedDict()
        self._backlog: dict[str, deque[Publish]] = {}
        self._unconfirmed: dict[int, Publish] = {}
        self._tags = 0

    def send(self, job: Publish) -> None:
        """Queues ``job`` on its address's link and sends what the link's credit allows."""
        self._backlog.setdefault(job.address, deque()).append(job)
        self.flush(self._link(job.address))

    def _link(self, address: str) -> Any:
        link = self._links.get(address)
        if link is not None:
            self._links.move_to_end(address)
            return link
        if len(self._links) >= self._max:
            self._close_an_idle_link()
        link = self._container.create_sender(self._session(), target=address,
                                             name=f"pca-{uuid.uuid4().hex[:16]}")
        link.pca_address = address
        self._links[address] = link
        return link

    def _close_an_idle_link(self) -> None:
        busy = {job.address for job in self._unconfirmed.values()}
        for address, link in self._links.items():
            if address not in busy and not self._backlog.get(address):
                del self._links[address]
                self._backlog.pop(address, None)
                link.close()
                return

    def flush(self, link: Any) -> None:
        """Sends the backlog of ``link``'s address while it has credit (on attach, on new credit)."""
        address = getattr(link, "pca_address", None)
        backlog = self._backlog.get(address) if address is not None else None
        if not backlog or not (link.state & Endpoint.REMOTE_ACTIVE):
            return
        while backlog and link.credit > 0:
            job = backlog.popleft()
            if job.done.is_set():
                continue  # its caller gave up (timed out) before it could be sent
            self._tags += 1
            message = AmqpMessage(body=job.payload, inferred=True, address=job.address, subject=job.key,
                                  durable=job.confirm)
            delivery = link.send(message, tag=str(self._tags))
            if job.confirm:
                delivery.pca_tag = self._tags
                self._unconfirmed[self._tags] = job
            else:
                delivery.settle()
                job.finish()

    def outcome(self, delivery: Any, error: PcaError | None) -> None:
        """The broker settled ``delivery``: its publisher returns, or raises ``error``."""
        job = self._unconfirmed.pop(getattr(delivery, "pca_tag", -1), None)
        if job is not None:
            job.finish(error)

    def link_ended(self, link: Any, error: PcaError) -> None:
        """The broker refused or closed ``link``: what waits for it fails with ``error``."""
        address = getattr(link, "pca_address", None)
        if address is None or self._links.get(address) != link:
            return
        del self._links[address]
        for job in self._backlog.pop(address, ()):
            job.finish(error)
        for tag, job in list(self._unconfirmed.items()):
            if job.address == address:
                del self._unconfirmed[tag]
                job.finish(error)

    def session_ended(self, reason: str) -> None:
        """The broker ended the session: each link's messages fail; one not attached yet was the refused."""
        for link in list(self._links.values()):
            address = link.pca_address
            if link.state & Endpoint.REMOTE_ACTIVE:
                error = f"amqp: the broker ended the session ({reason}); {address} may not be published"
            else:
                error = f"amqp: the broker refused {address} ({reason})"
            self.link_ended(link, TransportError(NAME, error))

    def fail_all(self, error: PcaError) -> None:
        """Forgets every link (their connection is gone); every waiting publisher gets ``error``."""
        backlog, self._backlog = self._backlog, {}
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        self._links.clear()
        for jobs in backlog.values():
            for job in jobs:
                job.finish(error)
        for job in unconfirmed.values():
            job.finish(error)
