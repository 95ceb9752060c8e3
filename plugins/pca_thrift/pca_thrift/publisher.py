"""The ``thrift`` log publisher: records to every configured databridge receiver (WSO2 CEP / DAS)."""

from __future__ import annotations

import concurrent.futures
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from pca_core.api import (
    Backoff,
    Capability,
    ConfigError,
    ConfigIssue,
    LogPublisher,
    LogPublishError,
    LogRecord,
    PublisherConfig,
    StreamDefinition,
)
from pca_thrift._events import Event, Events
from pca_thrift._options import ThriftOptions, addresses, config_issues
from pca_thrift._receiver import Receiver, ReceiverError
from pca_thrift.streams import Catalog

_log = logging.getLogger("pca_thrift")

NAME = "thrift"
_CLOSE_TIMEOUT = 5.0


class _Lane:
    """A receiver with what it still owes: events others took while it was down, and its retry time."""

    def __init__(self, receiver: Receiver, options: ThriftOptions) -> None:
        self.receiver = receiver
        self.backlog: deque[Event] = deque(maxlen=options.max_backlog)
        self.dropped = 0
        self.overflowing = False  # dropping since the backlog filled; warned once per episode
        self.backoff = Backoff(options.reconnect_delay, options.max_reconnect_delay)
        self.next_attempt = 0.0
        self.failure: str | None = None  # the error of the current outage, logged once
        self.busy: concurrent.futures.Future[None] | None = None  # a delivery that outlived its publish()


class ThriftLogPublisher(LogPublisher):
    """Publishes the ``health`` and ``logs`` streams as Stratos did, to every receiver of ``options.urls``.

    Each receiver has its own connections and session (:mod:`pca_thrift._receiver`) and is tried in
    parallel with the others. A batch counts as accepted once one receiver took it; a receiver that was
    down meanwhile gets what it missed first when it answers again, up to ``options.max_backlog`` records
    (the oldest beyond that are dropped, counted and logged). While no receiver takes a batch,
    :meth:`publish` raises and the core keeps the records. A receiver that failed is left alone for a
    backoff delay (``reconnect_delay`` doubling up to ``max_reconnect_delay``, with jitter).

    Raises:
        ConfigError: the TLS settings cannot be used (``ca_file``).
    """

    api_version = (2, 0)
    capabilities = frozenset({Capability.ACK, Capability.TLS})
    Options = ThriftOptions

    def __init__(self, config: PublisherConfig, options: ThriftOptions) -> None:
        super().__init__(config, options)
        context = _tls_context(options)
        self._lanes = [_Lane(Receiver(address, options, context), options) for address in addresses(options)]
        # One thread per receiver, and none with one receiver: publish() sends to it itself.
        self._pool = None if len(self._lanes) == 1 else \
            concurrent.futures.ThreadPoolExecutor(len(self._lanes), thread_name_prefix="pca-thrift")
        self._catalog = Catalog({})
        self._skipped: set[str] = set()
        self._lock = threading.Lock()  # publish() and close() one at a time
        self._closed = False

    @classmethod
    def check_config(cls, config: Any, options: ThriftOptions) -> list[ConfigIssue]:
        """Checks the receivers' addresses and the options' ranges."""
        return config_issues(options)

    def open(self, streams: Sequence[StreamDefinition], *, timeout: float | None = None) -> None:
        """Takes the core's stream definitions; receivers learn the Stratos streams on first use."""
        super().open(streams, timeout=timeout)
        self._catalog = Catalog(self.streams)

    def publish(self, batch: Sequence[LogRecord], *, timeout: float | None = None) -> int:
        """Sends ``batch`` to every receiver that is due; returns ``len(batch)`` once one acknowledged it.

        Raises:
            LogPublishError: no receiver took the batch (each one's reason is in the message), or the
                publisher is closed.
        """
        events = Events(batch, self._events)
        wait = self.config.publish_timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                raise LogPublishError(NAME, "thrift: publish after close")
            now = time.monotonic()
            due = [lane for lane in self._lanes if lane.next_attempt <= now and not _running(lane.busy)]
            results = self._deliver(due, events, wait)
            took = [lane for lane in due if results.get(id(lane)) is None]
            if not took:
                reasons = "; ".join(dict.fromkeys(lane.failure or "waiting to retry" for lane in self._lanes))
                raise LogPublishError(NAME, f"thrift: no receiver took the records: {reasons}")
            for lane in self._lanes:
                if lane not in took:
                    self._owe(lane, events)
        return len(batch)

    def check(self, *, timeout: float | None = None) -> str | None:
        """Logs in to every receiver of ``options.urls`` and opens its data connection, then logs out.

        No stream is defined and no event sent; ``timeout`` (default ``publish_timeout``) bounds each
        receiver's calls, ``options.timeout`` its connections.

        Raises:
            LogPublishError: a receiver does not answer, is not trusted or refused the credentials; the
                message names each one that failed.
        """
        seconds = self.config.publish_timeout if timeout is None else timeout
        reached, failures = [], []
        with self._lock:
            for lane in self._lanes:
                try:
                    lane.receiver.deliver([], seconds)
                except ReceiverError as exc:
                    failures.append(str(exc))
                    continue
                lane.receiver.logout(seconds)
                reached.append(str(lane.receiver.address))
        if failures:
            raise LogPublishError(NAME, "; ".join(failures))
        return f"{', '.join(reached)} accepted the login"

    def close(self, timeout: float | None = None) -> None:
        """Ends every receiver's session (best effort, within ``timeout``); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + (_CLOSE_TIMEOUT if timeout is None else timeout)
        for lane in self._lanes:
            if not _running(lane.busy):
                lane.receiver.logout(max(min(deadline - time.monotonic(), 2.0), 0.01))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- delivery -------------------------------------------------------------------------------------

    def _events(self, records: Sequence[LogRecord]) -> list[Event | None]:
        """The events of ``records``; None for one of a stream not sent. Once per record: kept short."""
        events: list[Event | None] = []
        name = stream = timestamp = None
        millis = 0
        for record in records:
            if record.timestamp != timestamp or record.stream != name:  # the lines of a poll share both
                name, timestamp, stream = record.stream, record.timestamp, self._catalog.stream(record)
                millis = round(timestamp * 1000)
                if stream is None:
                    self._skip(name)
            events.append(None if stream is None else Event(stream, millis, stream.row(record)))
        return events

    def _skip(self, name: str) -> None:
        if name not in self._skipped:
            self._skipped.add(name)
            _log.warning("thrift: records of stream %r are not sent: the databridge streams are 'health' and "
                         "'logs'", name)

    def _deliver(self, lanes: list[_Lane], events: Events, timeout: float) -> dict[int, str | None]:
        """Delivers to ``lanes`` in parallel; each one's error (None: it took everything), by ``id(lane)``."""
        if self._pool is None or len(lanes) == 1:
            return {id(lane): self._send(lane, events, timeout) for lane in lanes}
        futures = {id(lane): self._pool.submit(self._send, lane, events, timeout) for lane in lanes}
        done, _ = concurrent.futures.wait(futures.values(), timeout + self.options.timeout)
        results: dict[int, str | None] = {}
        for lane in lanes:
            future = futures[id(lane)]
            if future in done:
                results[id(lane)] = future.result()
            else:  # still sending: it keeps the receiver until it ends, and counts as failed meanwhile
                lane.busy = future
                reason = f"thrift: {lane.receiver.address} did not answer within {timeout} s"
                results[id(lane)] = self._failed(lane, reason)
        return results

    def _send(self, lane: _Lane, events: Events, timeout: float) -> str | None:
        owed = list(lane.backlog)
        try:
            lane.receiver.deliver([*owed, *events] if owed else events, timeout)
        except ReceiverError as exc:
            return self._failed(lane, str(exc))
        for _ in owed:  # not clear(): a delivery that outlived its publish() runs beside the next one
            lane.backlog.popleft()
        lane.overflowing = False
        lane.backoff.reset()
        lane.next_attempt = 0.0
        if lane.failure is not None:
            _log.info("thrift: %s takes records again (%d it had missed sent first)", lane.receiver.address,
                      len(owed))
            lane.failure = None
        return None

    def _failed(self, lane: _Lane, reason: str) -> str:
        if lane.failure is None:
            _log.warning("%s; retrying with backoff", reason)
        else:
            _log.debug("%s", reason)
        lane.failure = reason
        lane.next_attempt = time.monotonic() + lane.backoff.next()
        return reason

    @staticmethod
    def _owe(lane: _Lane, events: Events) -> None:
        """``lane`` missed ``events`` that another receiver took: it gets them when it answers again."""
        backlog = lane.backlog
        missed = [event for event in events if event is not None]
        overflow = len(backlog) + len(missed) - (backlog.maxlen or 0)
        backlog.extend(missed)  # beyond maxlen the deque drops its oldest
        if overflow > 0:
            lane.dropped += overflow
            if not lane.overflowing:
                lane.overflowing = True
                _log.warning("thrift: %s is behind by %d records, the most kept for it; dropping the oldest",
                             lane.receiver.address, backlog.maxlen)

    @property
    def dropped(self) -> dict[str, int]:
        """Records dropped per receiver because it stayed behind too long (``host:port`` → count)."""
        return {str(lane.receiver.address): lane.dropped for lane in self._lanes}


def _running(future: concurrent.futures.Future[None] | None) -> bool:
    return future is not None and not future.done()


def _tls_context(options: ThriftOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("thrift log publisher", "options.ca_file", f"a readable CA file ({exc})") from None
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _log.warning("thrift: options.verify is false: receiver certificates and host names are NOT checked")
    return context
