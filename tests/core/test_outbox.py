"""Tests for pca_core.agent.outbox, on a real SQLite file, the memory transport and the core scheduler.

Nothing sleeps to synchronise and nothing asserts on durations: every wait is on a Condition or an Event
with a generous timeout. "Exactly once" is checked after ``close``, which takes the drain lock, so no
publish can happen after it returned.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pca_core.agent.outbox import Outbox, OutboxError, OutboxFull
from pca_core.api.transport import Message
from pca_core.builtin import memory
from pca_core.builtin.memory import MemoryOptions, MemoryTransport
from pca_core.config import TransportConfig
from pca_core.runtime.scheduler import Scheduler

WAIT = 10.0  # seconds; only ever reached when a test is about to fail
TOPIC = "instance/status/InstanceStartedEvent"


class Receiver:
    """Subscribes on the bus and lets a test wait for a number of messages."""

    def __init__(self, transport: MemoryTransport) -> None:
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.threads: list[str] = []
        transport.subscribe("#", self._on_message)

    def _on_message(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, WAIT)

    @property
    def payloads(self) -> list[bytes]:
        with self._cond:
            return [m.payload for m in self.messages]


class Records(logging.Handler):
    """Keeps the outbox's log records and lets a test wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._cond = threading.Condition()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def wait_for(self, level: int, text: str) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self.matching(level, text)), WAIT)

    def matching(self, level: int, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level and text in r.getMessage()]


class Env:
    """Builds outboxes, transports and schedulers on one private bus, and tears them all down."""

    def __init__(self, tmp_path: Path) -> None:
        self.bus = f"outbox-{tmp_path.name}-{id(self)}"
        self.path = tmp_path / "state" / "outbox.sqlite"
        self.outboxes: list[Outbox] = []
        self.transports: list[MemoryTransport] = []
        self.schedulers: list[Scheduler] = []

    def transport(self, *, connect: bool = True) -> MemoryTransport:
        transport = MemoryTransport(TransportConfig(plugin="memory"), MemoryOptions(bus=self.bus))
        self.transports.append(transport)
        if connect:
            transport.connect()
        return transport

    def receiver(self) -> Receiver:
        return Receiver(self.transport())

    def scheduler(self, *, start: bool = True) -> Scheduler:
        scheduler = Scheduler(2, queue_size=16)
        self.schedulers.append(scheduler)
        if start:
            scheduler.start()
        return scheduler

    def outbox(self, transport: MemoryTransport | None = None, scheduler: Scheduler | None = None,
               **options: float) -> Outbox:
        outbox = Outbox(self.path, transport or self.transport(), scheduler or self.scheduler(), **options)
        self.outboxes.append(outbox)
        outbox.open()
        return outbox

    def down(self) -> None:
        memory.set_available(self.bus, False)

    def up(self) -> None:
        memory.set_available(self.bus, True)

    def pending_on_disk(self) -> list[tuple[str, bytes]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return db.execute("SELECT topic, payload FROM pending ORDER BY id").fetchall()

    def teardown(self) -> None:
        for outbox in self.outboxes:
            outbox.close(WAIT)
        for scheduler in self.schedulers:
            assert scheduler.shutdown(WAIT)
        for transport in self.transports:
            transport.close()
        self.up()  # a bus left down would outlive the test


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    yield made
    made.teardown()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("pca_core.agent.outbox")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def payloads(n: int) -> list[bytes]:
    return [f'{{"seq":{i}}}'.encode() for i in range(n)]


def test_a_put_is_delivered_once_on_a_scheduler_worker(env: Env) -> None:
    receiver = env.receiver()
    outbox = env.outbox()
    assert outbox.put(TOPIC, b'{"memberId":"m1"}') is True
    assert receiver.wait_for(1)
    outbox.close(WAIT)
    assert receiver.messages == [Message(TOPIC, b'{"memberId":"m1"}')]
    assert receiver.threads[0].startswith("pca-worker-")
    assert outbox.depth == 0
    assert env.pending_on_disk() == []


def test_the_order_of_puts_is_kept(env: Env) -> None:
    receiver = env.receiver()
    outbox = env.outbox()
    sent = payloads(30)
    for payload in sent:
        outbox.put(TOPIC, payload)
    assert receiver.wait_for(len(sent))
    outbox.close(WAIT)
    assert receiver.payloads == sent


def test_a_broker_outage_delays_messages_and_loses_or_duplicates_none(env: Env, records: Records) -> None:
    receiver = env.receiver()
    outbox = env.outbox(retry_interval=0.05)
    env.down()
    sent = payloads(5)
    for i, payload in enumerate(sent, start=1):
        assert outbox.put(TOPIC, payload)
        assert outbox.depth == i
    assert outbox.drain() == 0  # fails at once (or finds another drain running): nothing can go out
    assert records.wait_for(logging.DEBUG, "failed")  # retries went on, quietly
    assert receiver.messages == []
    assert [m for _, m in env.pending_on_disk()] == sent

    env.up()
    assert receiver.wait_for(len(sent))
    assert records.wait_for(logging.INFO, "backlog delivered")
    outbox.close(WAIT)
    assert receiver.payloads == sent
    assert outbox.depth == 0 and env.pending_on_disk() == []
    assert len(records.matching(logging.WARNING, "cannot publish")) == 1  # once per outage, not per retry


def test_nothing_the_outbox_logs_at_info_or_above_contains_a_payload(env: Env, records: Records) -> None:
    receiver = env.receiver()
    outbox = env.outbox(retry_interval=0.05)
    env.down()
    outbox.put(TOPIC, b"payload-marker")
    assert records.wait_for(logging.WARNING, "cannot publish")
    env.up()
    assert receiver.wait_for(1)
    assert records.wait_for(logging.INFO, "backlog delivered")
    outbox.close(WAIT)
    assert all("payload-marker" not in r.getMessage() for r in records.records if r.levelno >= logging.INFO)


def test_a_restart_delivers_what_the_previous_run_left_exactly_once(env: Env) -> None:
    receiver = env.receiver()
    first = env.outbox()
    env.down()
    sent = payloads(3)
    for payload in sent:
        first.put(TOPIC, payload)
    first.put(TOPIC, b"activated", transition="InstanceActivatedEvent:m1")
    first.close(WAIT)
    assert env.schedulers[-1].shutdown(WAIT)
    env.transports[-1].close()

    # As the agent does: open the outbox, start the scheduler, then connect once the broker is back.
    transport, scheduler = env.transport(connect=False), env.scheduler(start=False)
    second = env.outbox(transport, scheduler)
    assert second.depth == 4
    scheduler.start()
    env.up()
    transport.connect()
    assert receiver.wait_for(4)
    second.close(WAIT)
    assert receiver.payloads == [*sent, b"activated"]
    assert env.pending_on_disk() == []


def test_a_transition_suppressed_by_an_earlier_run_is_a_warning_naming_the_file(env: Env, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pca_core.agent.outbox")
    key = "InstanceActivatedEvent:m1"
    first = env.outbox()
    assert first.put(TOPIC, b"activated", transition=key) is True
    assert first.put(TOPIC, b"activated again", transition=key) is False  # this run's own: no warning
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    first.close(WAIT)
    second = env.outbox()
    assert second.put(TOPIC, b"activated after a restart", transition=key) is False
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(env.path) in warning and key in warning and "earlier run" in warning
    second.close(WAIT)


def test_a_transition_is_recorded_once_ever(env: Env) -> None:
    receiver = env.receiver()
    first = env.outbox()
    key = "InstanceStartedEvent:m1"
    assert not first.has_transition(key)
    assert first.put(TOPIC, b"started", transition=key) is True
    assert first.has_transition(key)
    assert first.put(TOPIC, b"started again", transition=key) is False
    assert receiver.wait_for(1)
    first.close(WAIT)

    second = env.outbox()
    assert second.has_transition(key)
    assert second.put(TOPIC, b"started after restart", transition=key) is False
    assert second.depth == 0
    assert second.put(TOPIC, b"other", transition="InstanceActivatedEvent:m1") is True
    assert receiver.wait_for(2)
    second.close(WAIT)
    assert receiver.payloads == [b"started", b"other"]


def test_close_with_the_broker_down_keeps_the_messages_on_disk(env: Env) -> None:
    outbox = env.outbox()
    env.down()
    outbox.put(TOPIC, b"one")
    outbox.put(TOPIC, b"two")
    outbox.close(0.5)
    outbox.close(0.5)  # idempotent
    assert env.pending_on_disk() == [(TOPIC, b"one"), (TOPIC, b"two")]
    assert outbox.depth == 2
    with pytest.raises(RuntimeError, match="closed"):
        outbox.put(TOPIC, b"three")


def test_close_does_not_wait_for_a_publish_stuck_past_its_timeout(env: Env) -> None:
    entered, release = threading.Event(), threading.Event()

    def stuck_broker(message: Message) -> None:  # memory delivery is synchronous: publish waits for it
        entered.set()
        release.wait(WAIT)

    env.transport().subscribe(TOPIC, stuck_broker)
    outbox = env.outbox()
    outbox.put(TOPIC, b"in flight")
    assert entered.wait(WAIT)
    closer = threading.Thread(target=outbox.close, args=(0.1,))
    closer.start()
    closer.join(WAIT)
    try:
        assert not closer.is_alive()
        assert not release.is_set()  # close returned while the publish was still in flight
    finally:
        release.set()
    # The broker may have taken it, but the outbox could not record that: it goes again next run.
    assert env.pending_on_disk() == [(TOPIC, b"in flight")]


def test_the_pending_cap_refuses_more_with_a_clear_error(env: Env) -> None:
    outbox = env.outbox(max_pending=3)
    env.down()
    for payload in payloads(3):
        outbox.put(TOPIC, payload)
    with pytest.raises(OutboxFull, match="3 unconfirmed messages are waiting, the limit") as caught:
        outbox.put(TOPIC, b"one too many", transition="InstanceActivatedEvent:m1")
    assert caught.value.path == env.path
    assert not outbox.has_transition("InstanceActivatedEvent:m1")  # nothing of it was recorded
    assert outbox.depth == 3 and len(env.pending_on_disk()) == 3


def test_bad_messages_are_refused_before_anything_is_recorded(env: Env) -> None:
    outbox = env.outbox()
    with pytest.raises(TypeError, match="bytes"):
        outbox.put(TOPIC, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="publishable"):
        outbox.put("instance/#", b"{}", transition="k")
    assert not outbox.has_transition("k")
    assert outbox.depth == 0


def test_the_file_is_private_and_its_directory_is_created(env: Env) -> None:
    env.outbox()
    assert stat.S_IMODE(env.path.parent.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(env.path.stat().st_mode) & 0o077 == 0


def test_a_file_from_a_newer_schema_is_refused(env: Env) -> None:
    env.path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(env.path)) as db:
        db.execute("PRAGMA user_version=99")
    outbox = Outbox(env.path, env.transport(), env.scheduler())
    with pytest.raises(OutboxError, match="newer"):
        outbox.open()
