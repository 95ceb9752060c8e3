#!/usr/bin/env python3
"""Kafka throughput: a pca-kafka subscription into the core dispatcher, against a raw kafka-python consumer.

One Tansu broker of the benchmark's own (``tests/support/tansu.py``: memory storage, a free port on
127.0.0.1; stopped at the end) serves both runs. Each round a raw ``KafkaProducer`` puts N
MemberActivatedEvent messages (the Gson sample, 499 bytes) into a fresh topic (Tansu creates it with 4
partitions) and flushes, so the broker has acknowledged every one; only then does the receiver start, and
the clock runs from its start to its N-th message:

- raw: a ``KafkaConsumer`` (no group, no auto-commit, no metrics thread, as pca's) created on a thread of
  its own, which assigns itself every partition of ``bench.raw.<hex>`` (``partitions_for_topic``), seeks
  to their beginning and counts each record of a ``poll()`` loop; the clock starts as the thread starts;
- pca: ``KafkaTransport`` subscribed to ``bench/pca/<hex>`` (the Kafka topic ``bench.pca.<hex>``) with
  the handler wrapped by ``Dispatcher.wrap``, as the agent's runtime does, so each record crosses to the
  dispatcher thread, where the handler counts; the dispatcher acks it, and the consumer commits the
  acknowledged offsets. The clock starts at ``connect()`` (``_throughput.timed_drain``).

pca reads a topic that existed at its group's first start from the end, so it would skip preloaded
messages. Each pca round therefore starts the group before the preload: a first transport with the
round's client id (its group) connects to the empty topic, which commits the group's starting offsets
(0), and closes; then the topic is preloaded, and the timed transport, same client id, resumes the group at
those offsets, as an agent does after a restart, reading every preloaded message.

Each figure is the best of several rounds. After the last round's timed drain the pca transport stays
connected while another N messages are put into its topic, to count threads: ``threads_before`` is taken
once it is connected and idle, ``threads_after`` once that live burst was handled (goal: equal).
``raw_sent``/``raw_received`` and ``pca_sent``/``pca_received`` count the messages put into each receiver's
topics and those it counted, over every round (the live burst included), after it was closed: equal when
nothing was lost or delivered twice.

Usage: python bench/kafka_throughput.py [--json] [--messages N] [--rounds R]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _throughput import PAYLOAD, TIMEOUT, Counter, arguments, compare, timed_drain
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from pca_kafka import KafkaOptions, KafkaTransport

from pca_core.config import TransportConfig

ROOT = Path(__file__).resolve().parent.parent


def preload(broker: Any, topic: str, messages: int) -> None:
    """Puts ``messages`` messages into the Kafka topic ``topic``; returns once the broker acknowledged all."""
    producer = KafkaProducer(**broker.client_config(), acks="all", enable_idempotence=False,
                             linger_ms=5, metrics_enabled=False)
    try:
        producer.partitions_for(topic)  # Tansu creates the topic on this metadata request if it is new
        futures = [producer.send(topic, PAYLOAD) for _ in range(messages)]
        producer.flush(TIMEOUT)
        for future in futures:
            future.get(timeout=0)  # raises if the broker refused one
    finally:
        producer.close(5)


def raw_round(broker: Any, messages: int, tally: dict[str, int]) -> float:
    """Seconds a raw kafka-python consumer takes to read a preloaded topic; adds to ``tally``'s counts."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    preload(broker, topic, messages)
    counter = Counter()
    stop = threading.Event()
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            consumer = KafkaConsumer(**broker.client_config(), group_id=None, enable_auto_commit=False,
                                     metrics_enabled=False)
        except BaseException as exc:
            failure.append(exc)
            return
        try:
            numbers = sorted(consumer.partitions_for_topic(topic) or ())
            partitions = [TopicPartition(topic, p) for p in numbers]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for record in records:
                        counter.add(record)
        except BaseException as exc:
            failure.append(exc)
        finally:
            consumer.close(autocommit=False)

    thread = threading.Thread(target=consume, name="raw-kafka", daemon=True)
    start = time.perf_counter()
    thread.start()
    try:
        counter.wait(messages)
    except RuntimeError:
        if failure:
            raise RuntimeError(f"the raw consumer failed: {failure[0]!r}") from failure[0]
        raise
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join(10)
    tally["raw_sent"] += messages
    tally["raw_received"] += counter.count
    return elapsed


def pca_round(broker: Any, messages: int, tally: dict[str, int], threads: dict[str, int] | None) -> float:
    """Seconds pca-kafka plus the dispatcher take to read a preloaded topic; adds to ``tally``'s counts.

    With ``threads``, a live burst follows the drain, and the thread counts around it go there.
    """
    name = uuid.uuid4().hex[:8]
    pattern, topic = f"bench/pca/{name}", f"bench.pca.{name}"
    client_id = f"bench-pca-{name}"
    # The group starts on the empty topic at offset 0.
    preload(broker, topic, 0)
    starter = _transport(broker, client_id)
    starter.subscribe(pattern, lambda message: message.ack())
    starter.connect(timeout=10)
    starter.close(5)
    preload(broker, topic, messages)
    # The live burst goes into the topic pca is consuming.
    elapsed, received = timed_drain(_transport(broker, client_id), pattern, messages, threads,
                                    lambda: preload(broker, topic, messages))
    tally["pca_sent"] += messages * (1 if threads is None else 2)
    tally["pca_received"] += received
    return elapsed


def _transport(broker: Any, client_id: str) -> KafkaTransport:
    return KafkaTransport(TransportConfig(plugin="kafka", urls=(broker.url,), client_id=client_id),
                          KafkaOptions())


def main() -> int:
    """Runs the benchmark and prints the figures."""
    args = arguments(__doc__)
    sys.path.insert(0, str(ROOT))  # the test-owned Tansu of tests/support
    from tests.support.tansu import Tansu

    with tempfile.TemporaryDirectory(prefix="pca-bench-kafka-") as tmp, Tansu(Path(tmp)) as broker:
        return compare(args, broker, raw_round, pca_round,
                       ("read from a preloaded Tansu topic (4 partitions)",
                        "raw kafka-python consumer", "pca-kafka into the dispatcher"))


if __name__ == "__main__":
    raise SystemExit(main())
