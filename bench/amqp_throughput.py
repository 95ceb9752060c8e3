#!/usr/bin/env python3
"""AMQP throughput: a pca-amqp subscription into the core dispatcher, against a raw proton receiver.

One RabbitMQ node of the benchmark's own (``tests/support/rabbitmq.py``: its own directory and ports on
127.0.0.1, the AMQP 1.0 plugin) serves both runs and is shut down at the end. A topic subscription drops
what is published while nobody listens, so each run drains a preloaded queue instead: a raw proton sender
puts N MemberActivatedEvent messages (the Gson sample, 499 bytes, the routing key as subject) into a fresh
durable queue ``/queue/<name>`` (RabbitMQ declares it on the first attach) and waits until the broker has
accepted every one; only then does the receiver start, and the clock runs from its start to its N-th
message:

- raw: a proton ``Container`` (run on a thread of its own) with a ``MessagingHandler`` receiver on
  ``/queue/<name>``, prefetch 256 and auto-accept (it accepts each message as it arrives), counting in
  ``on_message``; the clock starts as the thread starts;
- pca: ``AmqpTransport`` with ``address_prefix="/queue/"`` and ``prefetch=256``, subscribed to the topic
  ``<name>`` (the queue's name) with the handler wrapped by ``Dispatcher.wrap``, as the agent's runtime
  does, so each message crosses to the dispatcher thread, where the handler counts; the dispatcher acks it
  once the handler ran, and the transport then accepts (settles) it and gives the broker one more credit.
  The clock starts at ``connect()``.

Each figure is the best of several rounds; every queue is deleted after its round. After the last round's
timed drain the pca transport stays connected while another N messages are put into its queue, to count
threads: ``threads_before`` is taken once it is connected and idle, ``threads_after`` once that live burst
was handled (goal: equal). ``raw_sent``/``raw_received`` and ``pca_sent``/``pca_received`` count the
messages put into each receiver's queues and those it counted, over every round (the live burst included),
after its connection was closed: equal when nothing was lost or delivered twice.

Usage: python bench/amqp_throughput.py [--json] [--messages N] [--rounds R]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _throughput import PAYLOAD, Counter, arguments, compare, timed_drain
from pca_amqp import AmqpOptions, AmqpTransport
from proton import Message as AmqpMessage
from proton.handlers import MessagingHandler
from proton.reactor import Container

from pca_core.config import TransportConfig

ROOT = Path(__file__).resolve().parent.parent
PREFETCH = 256


class _Preload(MessagingHandler):
    """Sends ``messages`` copies of the payload to ``/queue/<queue>``; closes once all were accepted."""

    def __init__(self, url: str, queue: str, messages: int) -> None:
        super().__init__()
        self.url, self.queue, self.messages = url, queue, messages
        self.sent = self.accepted = 0
        self.failure: str | None = None

    def on_start(self, event: Any) -> None:
        conn = event.container.connect(self.url, reconnect=False)
        event.container.create_sender(conn, f"/queue/{self.queue}")

    def on_sendable(self, event: Any) -> None:
        sender = event.sender
        message = AmqpMessage(body=PAYLOAD, subject=self.queue)
        while sender.credit and self.sent < self.messages:
            sender.send(message)
            self.sent += 1

    def on_accepted(self, event: Any) -> None:
        self.accepted += 1
        if self.accepted == self.messages:
            event.connection.close()

    def on_rejected(self, event: Any) -> None:
        self.failure = "the broker rejected a preloaded message"
        event.connection.close()

    def on_transport_error(self, event: Any) -> None:
        self.failure = f"preload connection failed: {event.transport.condition}"


def preload(url: str, queue: str, messages: int) -> None:
    """Puts ``messages`` messages into the durable queue ``queue``; returns once the broker has them all."""
    handler = _Preload(url, queue, messages)
    Container(handler).run()
    if handler.failure is not None or handler.accepted != messages:
        raise RuntimeError(handler.failure or f"only {handler.accepted} of {messages} messages preloaded")


class _RawReceiver(MessagingHandler):
    """The plain proton receiver: prefetch 256, auto-accept, a count per message."""

    def __init__(self, url: str, queue: str, counter: Counter) -> None:
        super().__init__(prefetch=PREFETCH, auto_accept=True)
        self.url, self.queue, self.counter = url, queue, counter
        self.conn: Any = None

    def on_start(self, event: Any) -> None:
        self.conn = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(self.conn, f"/queue/{self.queue}")

    def on_message(self, event: Any) -> None:
        self.counter.add(event.message)


def raw_round(node: Any, messages: int, tally: dict[str, int]) -> float:
    """Seconds a raw proton receiver takes to drain a preloaded queue; adds to ``tally``'s counts."""
    queue = f"bench-raw-{uuid.uuid4().hex[:8]}"
    preload(node.url, queue, messages)
    counter = Counter()
    handler = _RawReceiver(node.url, queue, counter)
    container = Container(handler)
    thread = threading.Thread(target=container.run, name="raw-proton", daemon=True)
    start = time.perf_counter()
    thread.start()
    counter.wait(messages)
    elapsed = time.perf_counter() - start
    container.schedule(0, _Closer(handler))
    thread.join(10)
    tally["raw_sent"] += messages
    tally["raw_received"] += counter.count
    node.ctl("delete_queue", queue)
    return elapsed


class _Closer:
    """A timer task that closes the raw receiver's connection on the container thread."""

    def __init__(self, handler: _RawReceiver) -> None:
        self.handler = handler

    def on_timer_task(self, _event: Any) -> None:
        self.handler.conn.close()


def pca_round(node: Any, messages: int, tally: dict[str, int], threads: dict[str, int] | None) -> float:
    """Seconds pca-amqp plus the dispatcher take to drain a preloaded queue; adds to ``tally``'s counts.

    With ``threads``, a live burst follows the drain, and the thread counts around it go there.
    """
    queue = f"bench-pca-{uuid.uuid4().hex[:8]}"
    preload(node.url, queue, messages)
    config = TransportConfig(plugin="amqp", urls=(node.url,), client_id=queue)
    transport = AmqpTransport(config, AmqpOptions(address_prefix="/queue/", prefetch=PREFETCH))
    # The live burst goes into the queue pca is consuming.
    elapsed, received = timed_drain(transport, queue, messages, threads,
                                    lambda: preload(node.url, queue, messages))
    tally["pca_sent"] += messages * (1 if threads is None else 2)
    tally["pca_received"] += received
    node.ctl("delete_queue", queue)
    return elapsed


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments(__doc__)
    sys.path.insert(0, str(ROOT))  # the test-owned RabbitMQ node of tests/support
    from tests.support.rabbitmq import RabbitMQ

    with tempfile.TemporaryDirectory(prefix="pca-bench-amqp-") as tmp, RabbitMQ(Path(tmp)) as node:
        return compare(args, node, raw_round, pca_round,
                       ("drained from a preloaded RabbitMQ queue over AMQP 1.0",
                        "raw proton receiver", "pca-amqp into the dispatcher"))


if __name__ == "__main__":
    raise SystemExit(main())
