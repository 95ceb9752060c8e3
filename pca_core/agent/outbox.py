"""The durable outbox: outgoing status events wait on disk until the transport confirms them.

The agent records every status event it emits in a SQLite file in its state directory, and the outbox
publishes them in order on the core scheduler's workers. A broker outage or an agent restart delays an
event but never loses it, and an event that marks a lifecycle transition is recorded at most once, ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pca_core.api.errors import PcaError, TransportError
from pca_core.api.topics import validate_topic
from pca_core.api.transport import ConnectionState, QoS, Transport
from pca_core.runtime.scheduler import Scheduler, SchedulerBusy, Task

__all__ = ["Outbox", "OutboxError", "OutboxFull"]

_log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transitions (
    key TEXT PRIMARY KEY,
    recorded REAL NOT NULL
);
"""
_BATCH = 64  # messages read per query while draining
# Publishing is pointless before the first connect and after close; in every other state it is tried, so
# a plugin that reconnected without saying so still delivers on the next tick.
_IDLE_STATES = frozenset({ConnectionState.DISCONNECTED, ConnectionState.CLOSED})


class OutboxError(PcaError):
    """The outbox could not open its file or record a message.

    Attributes:
        path: the outbox's SQLite file.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"outbox {path}: {message}")


class OutboxFull(OutboxError):
    """The outbox already holds its maximum of unconfirmed messages; the new one was not recorded."""


class Outbox:
    """A durable, ordered queue of outgoing messages in front of a :class:`Transport`.

    :meth:`put` commits a message to the SQLite file before it returns (WAL journal, ``synchronous=FULL``,
    so a committed message survives a crash of the agent or of the machine). Draining publishes the oldest
    message first at QoS 1 and deletes each one only after :meth:`Transport.publish` returned; on the
    first failure it stops, keeping the order, and the next attempt starts from that message again.
    Delivery is therefore at least once: a crash between the broker's confirmation and the delete
    publishes that one message again after the restart.

    A message may carry a *transition* key (e.g. ``InstanceActivatedEvent:<member id>``). The key is
    recorded in the same transaction as the message and kept forever, and :meth:`put` refuses a key it
    has already recorded, so the agent never emits one lifecycle transition twice, even across restarts.

    Draining runs on the scheduler's workers only: a periodic tick every ``retry_interval`` seconds, plus
    a drain requested after each :meth:`put` and whenever the transport reports ``CONNECTED`` or
    ``RECONNECTED``. At most one drain runs at a time. Only :meth:`close` publishes on the caller's thread.

    The file stays small: the agent emits a handful of messages per lifecycle transition, the transitions
    table holds a few keys per member lifecycle, and pending messages are capped at ``max_pending``.

    Args:
        path: the SQLite file, normally ``outbox.sqlite`` in the agent's state directory.
        transport: publishes the messages.
        scheduler: runs the drains.
        retry_interval: seconds between periodic drain attempts.
        publish_timeout: seconds each publish may wait for the broker's confirmation.
        max_pending: the most unconfirmed messages held; :meth:`put` raises :class:`OutboxFull` beyond it.
    """

    def __init__(self, path: Path, transport: Transport, scheduler: Scheduler, *, retry_interval: float = 2.0,
                 publish_timeout: float = 10.0, max_pending: int = 10_000) -> None:
        if not retry_interval > 0 or not publish_timeout > 0 or max_pending < 1:
            raise ValueError("retry_interval and publish_timeout must be positive and max_pending at least 1")
        self.path = Path(path)
        self._transport = transport
        self._scheduler = scheduler
        self._retry_interval = retry_interval
        self._publish_timeout = publish_timeout
        self._max_pending = max_pending
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()  # guards _db and _depth
        self._drain_lock = threading.Lock()  # one drain at a time
        self._depth = 0
        self._opened = False
        self._opened_at = 0.0  # wall clock: a transition recorded before it is an earlier run's
        self._closing = False
        self._requested = False  # a drain was asked for while another one held the drain lock
        self._tick: Task | None = None
        # Outage bookkeeping, touched only while holding the drain lock.
        self._failing = False
        self.published = 0  # messages published since the start
        self._held_back = False  # messages were delayed (an outage, or left by a previous run)
        self._sent_since_held = 0

    # --- Lifecycle -----------------------------------------------------------------------------------

    def open(self) -> None:
        """Opens (creating if needed) the file and starts draining what a previous run left.

        The parent directory is created with mode ``0o700`` and the file with ``0o600``.

        Raises:
            OutboxError: the file cannot be created or opened, or was written by a newer pca.
            RuntimeError: the outbox was opened or closed before.
        """
        if self._opened or self._closing:
            raise RuntimeError(f"outbox {self.path} can be opened only once, and not after close")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(self.path, f"written by a newer pca (schema {version}, this one reads "
                                             f"{SCHEMA_VERSION})")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                _log.debug("outbox %s: WAL is not available here, using journal mode %s", self.path, mode)
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            depth = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        except sqlite3.Error as exc:
            db.close()
            raise OutboxError(self.path, f"cannot open: {exc}") from exc
        except OutboxError:
            db.close()
            raise
        with self._db_lock:
            self._db, self._depth, self._opened, self._opened_at = db, depth, True, time.time()
        if depth:
            self._held_back = True
            _log.info("outbox: %d message(s) left by a previous run will be published", depth)
        self._transport.add_state_listener(self._on_state)
        self._tick = self._scheduler.every(self._retry_interval, self.drain, name="outbox-drain")
        self._request_drain()

    def close(self, timeout: float) -> None:
        """Makes one last drain attempt bounded by ``timeout``, then closes the file. Idempotent.

        Messages that could not be published stay in the file for the next run.
        """
        deadline = time.monotonic() + timeout
        with self._db_lock:
            if self._closing:
                return
            self._closing = True
        if self._tick is not None:
            self._tick.cancel()
        if self._opened and self._drain_lock.acquire(timeout=max(0.0, timeout)):
            try:
                self._drain_locked(deadline)
            finally:
                self._drain_lock.release()
        with self._db_lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()
        if self._depth:
            _log.info("outbox: %d message(s) kept for the next run", self._depth)

    # --- Recording -----------------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, *, transition: str | None = None) -> bool:
        """Records a message durably and asks for a drain.

        Args:
            topic: the canonical topic to publish on.
            payload: the message body.
            transition: a key naming the lifecycle transition the message announces, or None.

        Returns:
            True when the message was recorded; False, recording nothing, when ``transition`` had already
            been recorded in this outbox (at any time, in any earlier run). A transition refused because of
            an earlier run's record is logged at WARNING, naming the file: a state directory kept from
            another life of the member id (or shared by two agents) would otherwise silently keep the
            member from ever being activated.

        Raises:
            OutboxFull: ``max_pending`` messages are already waiting; nothing was recorded.
            OutboxError: the file could not be written.
            RuntimeError: the outbox is not open.
            TypeError: ``payload`` is not bytes.
            ValueError: ``topic`` is not a publishable topic.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        validate_topic(topic)
        now = time.time()
        with self._transaction() as db:
            if transition is not None:
                row = db.execute("SELECT recorded FROM transitions WHERE key = ?", (transition,)).fetchone()
                if row is not None:
                    self._refused(transition, row[0])
                    return False
                db.execute("INSERT INTO transitions (key, recorded) VALUES (?, ?)", (transition, now))
            if self._depth >= self._max_pending:
                raise OutboxFull(self.path, f"{self._depth} unconfirmed messages are waiting, the limit; the "
                                            f"broker has accepted none for a long time, so the message for "
                                            f"{topic} was not recorded")
            db.execute("INSERT INTO pending (topic, payload, created) VALUES (?, ?, ?)",
                       (topic, payload, now))
            self._depth += 1
        self._request_drain()
        return True

    def _refused(self, transition: str, recorded: float) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(recorded))
        if recorded < self._opened_at:
            _log.warning("outbox %s: %s was recorded by an earlier run (%s), so it is not published again; "
                         "if this member id was re-used, or another agent shares this state directory, "
                         "remove the file while the agent is stopped", self.path, transition, when)
        else:
            _log.info("outbox %s: %s was recorded already in this run (%s); not again", self.path, transition,
                      when)

    def has_transition(self, transition: str) -> bool:
        """Whether ``transition`` was ever recorded in this outbox.

        Raises:
            RuntimeError: the outbox is not open.
        """
        with self._db_lock:
            db = self._require_open()
            return db.execute("SELECT 1 FROM transitions WHERE key = ?", (transition,)).fetchone() is not None

    @property
    def depth(self) -> int:
        """The number of messages not yet confirmed by the broker (as last known, once closed)."""
        return self._depth

    # --- Draining ------------------------------------------------------------------------------------

    def drain(self) -> int:
        """Publishes the pending messages, oldest first, until none is left or one fails.

        Never blocks on another drain: if one is running, it returns 0 at once and the running drain (or
        the next tick) picks the work up.

        Returns:
            The number of messages published and removed by this call.
        """
        sent = 0
        while True:
            if not self._drain_lock.acquire(blocking=False):
                self._requested = True
                return sent
            try:
                self._requested = False
                delivered, finished = self._drain_locked(None)
                sent += delivered
            finally:
                self._drain_lock.release()
            if not (finished and self._requested):
                return sent

    def _drain_locked(self, deadline: float | None) -> tuple[int, bool]:
        """Drains while holding the drain lock; returns (messages sent, whether nothing failed)."""
        if self._transport.state in _IDLE_STATES:
            return 0, True
        sent, last_id = 0, 0
        while True:
            with self._db_lock:
                if self._db is None:
                    return sent, False
                rows = self._db.execute("SELECT id, topic, payload, created FROM pending WHERE id > ? "
                                        "ORDER BY id LIMIT ?", (last_id, _BATCH)).fetchall()
            if not rows:
                self._backlog_delivered()
                return sent, True
            for message_id, topic, payload, created in rows:
                timeout = self._publish_timeout
                if deadline is not None:
                    timeout = min(timeout, deadline - time.monotonic())
                    if timeout <= 0:
                        return sent, False
                try:
                    self._transport.publish(topic, payload, qos=QoS.AT_LEAST_ONCE, timeout=timeout)
                except (TransportError, TimeoutError) as exc:
                    self._publish_failed(message_id, topic, exc, expected=True)
                    return sent, False
                except Exception as exc:  # keep the message: a broken publish must not lose it
                    self._publish_failed(message_id, topic, exc, expected=False)
                    return sent, False
                if not self._delete(message_id):
                    return sent, False
                self._failing = False
                sent += 1
                self.published += 1
                self._sent_since_held += 1
                last_id = message_id
                _log.debug("outbox: published message #%d on %s after %.1fs", message_id, topic,
                           time.time() - created)

    def _delete(self, message_id: int) -> bool:
        with self._db_lock:
            if self._db is None:
                _log.debug("outbox: message #%d was published while the outbox closed; it stays recorded "
                           "and will be published again by the next run", message_id)
                return False
            try:
                self._db.execute("DELETE FROM pending WHERE id = ?", (message_id,))
            except sqlite3.Error:
                _log.exception("outbox %s: cannot remove published message #%d", self.path, message_id)
                return False
            self._depth -= 1
            return True

    def _publish_failed(self, message_id: int, topic: str, exc: Exception, *, expected: bool) -> None:
        if not self._failing:
            self._failing = True
            self._held_back = True
            _log.warning("outbox: cannot publish to %s (%s); %d message(s) held back, retrying every %gs",
                         topic, exc, self._depth, self._retry_interval, exc_info=not expected)
        else:
            _log.debug("outbox: retry of message #%d on %s failed: %s", message_id, topic, exc)

    def _backlog_delivered(self) -> None:
        if self._held_back:
            _log.info("outbox: backlog delivered (%d message(s) published after the delay)",
                      self._sent_since_held)
        self._held_back = False
        self._sent_since_held = 0

    def _request_drain(self) -> None:
        """Asks a scheduler worker for a drain; the periodic tick covers a request that cannot be queued."""
        self._requested = True
        try:
            self._scheduler.submit(self.drain, name="outbox-drain-now")
        except (SchedulerBusy, RuntimeError) as exc:  # busy or shut down: the tick (or close) drains
            _log.debug("outbox: drain not queued (%s)", exc)

    def _on_state(self, state: ConnectionState, error: BaseException | None) -> None:
        if state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED) and not self._closing:
            self._request_drain()

    # --- SQLite --------------------------------------------------------------------------------------

    def _require_open(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"outbox {self.path} is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Holds the DB lock for one write transaction, committed when the block returns normally.

        The block may change ``_depth``; a rollback restores it.
        """
        with self._db_lock:
            if self._closing:
                raise RuntimeError(f"outbox {self.path} is closed")
            db = self._require_open()
            depth = self._depth
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                self._depth = depth
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise OutboxError(self.path, f"cannot record a message: {exc}") from exc
                raise
