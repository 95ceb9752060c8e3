"""The consumer thread: the only thread that touches the KafkaConsumer (it is not thread safe).

It assigns itself every partition of every topic that one of the subscriptions' patterns matches (manual
assignment: no group rebalances, so no pause while a group re-forms when a topic appears), polls, hands
each record to the handlers of the subscriptions it matches, and commits the group's offsets once the core
acknowledged the records (see :class:`~pca_kafka._offsets.Offsets`). Acknowledgements from other threads
come through a deque. The topic list is read again every ``options.metadata_max_age`` seconds, and at
once when the subscriptions change.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import deque
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from pca_core.api import Message, Subscription, settle_once_all_acked, topic_matches
from pca_kafka._offsets import Offsets
from pca_kafka.names import Naming

_log = logging.getLogger("pca_kafka")

POLL_MS = 100
"""How long one poll waits for records; bounds how late an acknowledgement is committed."""


class ConsumerLoop:
    """The consumer and its thread ``pca-kafka``.

    Args:
        consumer: a KafkaConsumer of the transport's group, with nothing assigned yet.
        naming: topics as Kafka names.
        max_in_flight: records handed over and not acknowledged at most; beyond it, fetching pauses.
        refresh_interval: seconds between two reads of the topic list (``options.metadata_max_age``).

    Attributes:
        active: the subscriptions; callers change them with :meth:`subscribe` and :meth:`unsubscribe`.
    """

    def __init__(self, consumer: KafkaConsumer, naming: Naming, max_in_flight: int,
                 refresh_interval: float) -> None:
        self._consumer = consumer
        self._naming = naming
        self._max_in_flight = max_in_flight
        self._refresh_interval = refresh_interval
        self._next_refresh = 0.0
        self._matcher: re.Pattern[str] | None = None
        self._lock = threading.Lock()  # guards _patterns, _changed and _waiting
        self._waiting: list[threading.Event] = []  # subscribe() calls not yet applied
        self._applying: list[threading.Event] = []  # applied, set once the refresh assigned them
        self._patterns: dict[Subscription, str] = {}
        self._changed = False
        self.active: set[Subscription] = set()
        self._routes: dict[str, tuple[str | None, tuple[Subscription, ...]]] = {}  # replaced on a change
        self._acks: deque[tuple[Any, int]] = deque()
        self._failed_commits: deque[dict[Any, int]] = deque()
        self._offsets = Offsets()
        self._exact: set[str] = set()  # the Kafka names of the subscriptions without wildcards
        self._existing: set[str] = set()  # topics there were when a subscription that matches them began
        self._old_patterns: set[str] = set()  # the patterns as last applied
        self._new_patterns: set[str] = set()  # added since the last refresh
        self._paused = False
        self._resync = False  # after a failure: positions come from the group's commits again
        self.assigned = threading.Event()  # set once the first refresh assigned what matched
        self._closing = threading.Event()
        self._close_timeout = 5.0
        self._thread = threading.Thread(target=self._run, name="pca-kafka", daemon=True)

    def start(self) -> None:
        """Starts the thread."""
        self._thread.start()

    def on_thread(self) -> bool:
        """Whether the caller is the consumer thread (a handler)."""
        return threading.current_thread() is self._thread

    def subscribe(self, subscription: Subscription, regex: str) -> threading.Event:
        """Adds a subscription; returns an event set once the thread assigned itself what it matches.

        From then on whatever is published on its topics reaches it.
        """
        applied = threading.Event()
        with self._lock:
            self._patterns[subscription] = regex
            self._changed = True
            self._waiting.append(applied)
        self.active.add(subscription)
        self._routes = {}
        return applied

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends a subscription at once for deliveries; the consumer's pattern changes on the next turn."""
        self.active.discard(subscription)
        self._routes = {}
        with self._lock:
            if self._patterns.pop(subscription, None) is not None:
                self._changed = True

    def close(self, timeout: float) -> bool:
        """Commits what was acknowledged, closes the consumer and ends the thread; False if not in time."""
        self._close_timeout = timeout
        self._closing.set()
        if not self._thread.is_alive() or self.on_thread():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._closing.is_set():
                try:
                    if self._resync:
                        self._resume_from_commits(consumer)
                    self._turn(consumer)
                except KafkaError as exc:
                    if not self._resync:
                        _log.warning("kafka: consuming failed (%s); resuming from the committed offsets once "
                                     "the broker answers", exc)
                    self._resync = True
                    self._closing.wait(1.0)
        except Exception:
            _log.exception("kafka: the consumer thread failed; nothing more is received")
        finally:
            self._drain_acks()
            self._commit(consumer, wait=True)
            try:
                consumer.close(autocommit=False, timeout_ms=int(self._close_timeout * 1000))
            except Exception as exc:
                _log.debug("kafka: closing the consumer: %s", exc)

    def _turn(self, consumer: KafkaConsumer) -> None:
        self._apply_subscriptions()
        if time.monotonic() >= self._next_refresh:
            self._refresh(consumer)
        self._drain_acks()
        self._commit(consumer)
        self._pace(consumer)
        if not consumer.assignment():
            self._closing.wait(POLL_MS / 1000)
            return
        batch = consumer.poll(timeout_ms=POLL_MS)
        if len(batch) == 1:
            ((partition, records),) = batch.items()
            for record in records:
                self._deliver(partition, record)
            return
        # Kafka orders a partition, not a topic set: the records of one fetch go out in timestamp order, so
        # events published one after the other on different topics arrive in that order when fetched
        # together. Within a partition the order is Kafka's own (sorting is stable).
        merged = sorted(((record.timestamp, partition, record) for partition, records in batch.items()
                         for record in records), key=lambda item: item[0])
        for _timestamp, partition, record in merged:
            self._deliver(partition, record)

    def _resume_from_commits(self, consumer: KafkaConsumer) -> None:
        """Moves every partition back to the group's committed offset, or to its start without one.

        After the connection failed, what was handed over and not acknowledged is read again (at least
        once), and a broker that lost its data (offsets start again from 0) is read from its start instead
        of from positions it no longer has.
        """
        assignment = consumer.assignment()
        committed = {tp: consumer.committed(tp) for tp in assignment}  # raises while the broker is away
        self._drain_acks()
        self._offsets.forget(assignment)
        for tp, offset in committed.items():
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        self._resync = False

    @staticmethod
    def _shrunk(consumer: KafkaConsumer) -> bool:
        """Whether a partition's end (as last fetched) is below the consumer's position: its log restarted.

        Not every broker answers a fetch beyond the end with an out-of-range error (Tansu does not), so
        the consumer would otherwise wait at its old position and skip what the new log holds below it.
        """
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is not None and consumer.position(tp) > end:
                return True
        return False

    def _apply_subscriptions(self) -> None:
        with self._lock:
            if not self._changed:
                return
            self._changed = False
            patterns = {subscription.pattern: regex for subscription, regex in self._patterns.items()}
            self._applying += self._waiting
            self._waiting = []
        wildcards = sorted({regex for pattern, regex in patterns.items() if "+" in pattern or "#" in pattern})
        self._matcher = re.compile("|".join(f"(?:{r})" for r in wildcards)) if wildcards else None
        self._exact = {self._naming.name(p) for p in patterns if "+" not in p and "#" not in p}
        self._new_patterns = set(patterns) - self._old_patterns
        self._old_patterns = set(patterns)
        self._next_refresh = 0.0

    def _matching_topics(self, consumer: KafkaConsumer) -> set[str]:
        """The topics the subscriptions match that exist now; the topic list is read only for wildcards."""
        matcher = self._matcher
        present = {t for t in consumer.topics() if matcher.fullmatch(t)} if matcher is not None else set()
        return present | {name for name in self._exact if consumer.partitions_for_topic(name)}

    def _refresh(self, consumer: KafkaConsumer) -> None:
        """Assigns every partition of the topics the patterns match.

        A partition the group has an offset for resumes there. Otherwise a topic that already existed when
        the subscription matching it began is read from its end (on the agent's first start, everything
        there was before), and a topic that appeared later from its start (also when an older
        subscription matches it too); that starting offset is committed at
        once, so a restart resumes exactly there. A committed offset the broker no longer has (its data is
        gone) resets to the earliest it has: nothing is skipped.
        """
        if self._shrunk(consumer):
            _log.warning("kafka: a partition now ends before the position read so far (the broker lost its "
                         "data); resuming from the committed offsets")
            self._resume_from_commits(consumer)
        matching = self._matching_topics(consumer)
        if self._new_patterns:  # what exists for the new subscriptions alone counts as existing
            new, old = self._new_patterns, self._old_patterns - self._new_patterns
            self._new_patterns = set()
            for name in matching:
                topic = self._naming.topic(name)
                if (topic is not None and any(topic_matches(p, topic) for p in new)
                        and not any(topic_matches(p, topic) for p in old)):
                    self._existing.add(name)
        wanted = {TopicPartition(t, p) for t in matching for p in consumer.partitions_for_topic(t) or ()}
        current = set(consumer.assignment())
        if wanted != current:
            gone = current - wanted
            if gone:
                self._drain_acks()
                self._commit(consumer, wait=True)
                self._offsets.forget(gone)
            consumer.assign(sorted(wanted))
            starts = {}
            for tp in wanted - current:
                if consumer.committed(tp) is not None:
                    consumer.position(tp)  # resolved now, from the committed offset
                    continue
                if tp.topic in self._existing:
                    consumer.seek_to_end(tp)
                else:
                    consumer.seek_to_beginning(tp)
                starts[tp] = consumer.position(tp)
            if starts:  # the group's starting point, so that a restart resumes exactly there
                consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in starts.items()})
            if self._paused:
                consumer.pause(*wanted)
        self._next_refresh = time.monotonic() + self._refresh_interval
        self.assigned.set()
        applied, self._applying = self._applying, []
        for event in applied:
            event.set()

    def _route(self, name: str) -> tuple[str | None, tuple[Subscription, ...]]:
        """The canonical topic of a Kafka topic name, and the subscriptions it matches (cached)."""
        routes = self._routes
        route = routes.get(name)
        if route is None:
            topic = self._naming.topic(name)
            matched = tuple(s for s in self.active if topic is not None and topic_matches(s.pattern, topic))
            route = routes[name] = (topic, matched)
        return route

    def _deliver(self, partition: TopicPartition, record: Any) -> None:
        topic, routed = self._route(record.topic)
        active = self.active
        subscriptions = [s for s in routed if s in active]  # an unsubscribe counts from the moment it returns
        self._offsets.delivered(partition, record.offset)
        settle = functools.partial(self._acks.append, (partition, record.offset))
        if not subscriptions:
            settle()  # unsubscribed meanwhile: dropped, and done with
            return
        payload = record.value if record.value is not None else b""
        settle = settle_once_all_acked(settle, len(subscriptions))
        for subscription in subscriptions:
            message = Message(topic, payload, settle)
            try:
                subscription.handler(message)
            except Exception:
                _log.exception("kafka: the handler of %r failed", subscription.pattern)
                message.ack()

    def _drain_acks(self) -> None:
        acks = self._acks
        while acks:
            partition, offset = acks.popleft()
            self._offsets.acked(partition, offset)

    def _commit(self, consumer: KafkaConsumer, *, wait: bool = False) -> None:
        """Commits what is due, without waiting for the broker unless ``wait``.

        A commit that fails is due again on the next turn. ``wait`` is for the way out, and before
        partitions are given up.
        """
        failed = self._failed_commits
        while failed:
            self._offsets.retry(failed.popleft())
        due = self._offsets.committable()
        if not due:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in due.items()}
        try:
            if wait:
                consumer.commit(offsets)
            else:
                consumer.commit_async(offsets, functools.partial(self._committed, due))
        except KafkaError as exc:
            self._offsets.retry(due)
            _log.debug("kafka: committing offsets failed (%s); trying again", exc)

    def _committed(self, due: dict[Any, int], _offsets: Any, response: Any) -> None:
        # Called by kafka-python, maybe on its IO thread: a failure goes back through a deque.
        if isinstance(response, Exception):
            self._failed_commits.append(due)

    def _pace(self, consumer: KafkaConsumer) -> None:
        """Pauses fetching while too many records wait for their acknowledgement, resumes below half."""
        in_flight = self._offsets.in_flight
        if not self._paused and in_flight >= self._max_in_flight:
            consumer.pause(*consumer.assignment())
            self._paused = True
        elif self._paused and in_flight <= self._max_in_flight // 2:
            consumer.resume(*consumer.paused())
            self._paused = False

