"""The log publisher conformance suite: what every LogPublisher plugin must do against a receiver it owns."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol

import pytest

from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogPublisher, LogRecord, StreamDefinition
from pca_core.api.plugin import Capability
from pca_core.api.settings import PublisherConfig
from pca_core.runtime import discovery
from pca_core.stratos.payload import Identity
from pca_core.telemetry.streams import core_streams
from pca_core.testing.building import build_plugin
from pca_core.testing.receiver import LogReceiver
from pca_core.testing.transport import _REQUIRES, _lookup, _run_bounded, _StillRunning, requires
from pca_core.testing.waiting import wait_until

__all__ = ["LogPublisherConformance", "PublisherFactory", "requires"]

_BASE_TIME = 1_700_000_000.125
_UNICODE = "ünïcödé, 日本語, emoji 🚀, quotes \" ' \\ and a tab\t"
_LONG = ("0123456789abcdefé日🚀" * 3000)[:65536]  # the tailer's longest line, in characters


class PublisherFactory(Protocol):
    """The type of the ``make_publisher`` fixture."""

    def __call__(self, **settings: Any) -> LogPublisher:
        """Builds a publisher of the plugin under test, pointed at the ``receiver``; closed at teardown.

        Args:
            **settings: other :class:`pca_core.api.PublisherConfig` fields (``publish_timeout``,
                ``batch_size``, ``streams``); ``options`` replaces the receiver's options table.
        """
        ...


class LogPublisherConformance:
    """The behaviour every log publisher plugin must show; subclass it in the plugin's tests.

    The subclass names the plugin and provides the receiver; the suite builds every publisher through
    discovery and the plugin's checks, exactly as the agent does, so the entry point is tested too::

        from pca_core.testing import LogPublisherConformance, LogReceiver

        class TestFluentdConformance(LogPublisherConformance):
            plugin = "fluentd"                            # the name in the pca.log_publishers group

            @pytest.fixture
            def receiver(self) -> Iterator[LogReceiver]:  # required: a receiver this test owns
                ...

            @pytest.fixture
            def publisher_options(self) -> dict:           # optional: added to the receiver's options
                return {"tag": "pca"}

    Publishers are opened with the core's own stream definitions (``logs`` and ``health``) and given
    records shaped as the core emits them. Tests of a capability the plugin's class does not declare
    (``ack``) are skipped with a reason naming it.

    Attributes:
        plugin: the entry point name of the publisher under test; the subclass must set it.
        wait_timeout: how long to wait for records to arrive.
        reconnect_timeout: how long a publisher may take to deliver again once its receiver is back.
        liveness_margin: added to a timeout the publisher was given, to bound how late it may return.
        close_timeout: the timeout given to ``close`` for every publisher at teardown.
        timestamp_resolution: how far a received timestamp may be from the one sent, in seconds (a
            protocol that carries milliseconds sets 0.001).
    """

    plugin: ClassVar[str]
    wait_timeout: ClassVar[float] = 30.0
    reconnect_timeout: ClassVar[float] = 60.0
    liveness_margin: ClassVar[float] = 10.0
    close_timeout: ClassVar[float] = 5.0
    timestamp_resolution: ClassVar[float] = 1e-6

    _capabilities: frozenset[Capability]
    _identity: Identity

    # -- fixtures -------------------------------------------------------------------------------------

    @pytest.fixture
    def publisher_class(self) -> type[LogPublisher]:
        """The plugin's class, loaded through its entry point in ``pca.log_publishers``."""
        name = getattr(self, "plugin", None)
        if not name:
            pytest.fail(f"{type(self).__name__}: set the class attribute plugin to the log publisher's entry "
                        f"point name in {discovery.LOG_PUBLISHERS!r}", pytrace=False)
        cls = discovery.load_plugin(discovery.LOG_PUBLISHERS, name)
        assert issubclass(cls, LogPublisher)  # load_plugin checked it; this tells the type checker
        return cls

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest,
                          publisher_class: type[LogPublisher]) -> None:
        # Runs before the other fixtures, so a skipped test starts no receiver.
        needed = getattr(request.function, _REQUIRES, ())
        missing = [c for c in needed if c not in publisher_class.capabilities]
        if missing:
            pytest.skip(f"log publisher plugin {self.plugin!r} does not declare capability "
                        + ", ".join(repr(str(c)) for c in missing))
        self._capabilities = frozenset(publisher_class.capabilities)
        # A member of its own per test: records are told apart by it, so a receiver may be shared.
        self._identity = Identity(application_id="pca-conformance", service_name="conformance",
                                  cluster_id="conformance.domain", tenant_id="-1234", multitenant=False,
                                  ports=(), member_id=f"conformance-{uuid.uuid4().hex[:12]}",
                                  cluster_instance_id="conformance-1", network_partition_id="np-1",
                                  partition_id="p-1")

    @pytest.fixture
    def make_publisher(self, request: pytest.FixtureRequest, receiver: LogReceiver,
                       publisher_class: type[LogPublisher]) -> Iterator[PublisherFactory]:
        """Builds publishers of the plugin under test, pointed at the receiver; closes them at teardown."""
        extra = dict(_lookup(request, "publisher_options", {}))
        made: list[LogPublisher] = []

        def make(**settings: Any) -> LogPublisher:
            if "plugin" in settings:
                raise TypeError("make_publisher() builds the class's own plugin; 'plugin' cannot be set")
            options = dict(settings.pop("options", {**receiver.options, **extra}))
            config = PublisherConfig(plugin=self.plugin, options=options, **settings)
            publisher = build_plugin(publisher_class, config, key="publishers[0]",
                                     source=f"{type(self).__name__}.make_publisher")
            made.append(publisher)
            return publisher

        yield make
        failures = []
        for publisher in reversed(made):
            error = _run_bounded(functools.partial(publisher.close, self.close_timeout),
                                 self.close_timeout + self.liveness_margin)
            if isinstance(error, _StillRunning):
                failures.append(f"{type(publisher).__name__}.close({self.close_timeout}) did not return "
                                f"within {self.close_timeout + self.liveness_margin} s")
            elif error is not None:
                failures.append(f"{type(publisher).__name__}.close({self.close_timeout}) raised {error!r}")
        if failures:
            pytest.fail("closing the test's publishers failed: " + "; ".join(failures), pytrace=False)

    # -- helpers --------------------------------------------------------------------------------------

    @property
    def streams(self) -> tuple[StreamDefinition, ...]:
        """The core's stream definitions (``logs``, ``health``) for this test's member."""
        return core_streams(self._identity)

    def log_record(self, n: int, line: str | None = None) -> LogRecord:
        """A ``logs`` record as the tailer makes it; ``n`` orders timestamps and, by default, the line."""
        return LogRecord("logs", _BASE_TIME + n / 1000, {
            "line": f"line {n}" if line is None else line, "path": "/var/log/app/server.log",
            "member_id": self._identity.member_id, "cluster_id": self._identity.cluster_id})

    def health_record(self, n: int, name: str, value: float) -> LogRecord:
        """A ``health`` record as the sampler makes it."""
        identity = self._identity
        return LogRecord("health", _BASE_TIME + n / 1000, {
            "name": name, "value": value, "cluster_id": identity.cluster_id,
            "cluster_instance_id": identity.cluster_instance_id, "network_partition_id": "np-1",
            "member_id": identity.member_id, "partition_id": "p-1"})

    def received(self, receiver: LogReceiver) -> list[LogRecord]:
        """The records ``receiver`` holds from this test (other tests' members are left out)."""
        return [r for r in receiver.records() if r.fields.get("member_id") == self._identity.member_id]

    def opened(self, make_publisher: PublisherFactory, **settings: Any) -> LogPublisher:
        """Builds a publisher and opens it with :attr:`streams`, as the core does before the first batch."""
        publisher = make_publisher(**settings)
        error = self.bounded(lambda: publisher.open(self.streams, timeout=self.wait_timeout),
                             self.wait_timeout + self.liveness_margin, "open() with the receiver running")
        if error is not None:
            raise error
        return publisher

    def publish(self, publisher: LogPublisher, batch: Sequence[LogRecord], timeout: float) -> int:
        """Publishes ``batch``; fails the test unless a valid count comes back within the timeout."""
        outcome: list[int] = []
        error = self.bounded(lambda: outcome.append(publisher.publish(batch, timeout=timeout)),
                             timeout + self.liveness_margin, f"publish() of {len(batch)} records")
        if error is not None:
            raise error
        accepted = outcome[0]
        assert type(accepted) is int and 0 <= accepted <= len(batch), (
            f"publish() must return how many records it accepted, from 0 to {len(batch)}; got {accepted!r}")
        return accepted

    def deliver_eventually(self, publisher: LogPublisher, batch: Sequence[LogRecord], timeout: float) -> None:
        """Offers ``batch`` as the core does until all of it was accepted, within ``timeout``.

        The rest again after a partial acceptance; ``open`` again before the next attempt after a failure.
        """
        left = list(batch)
        errors: list[BaseException] = []
        failed = False

        def offer() -> int:
            if failed:
                publisher.open(self.streams, timeout=5)
            return publisher.publish(left, timeout=5)

        def attempt() -> bool:
            nonlocal left, failed
            outcome: list[int] = []
            error = self.bounded(lambda: outcome.append(offer()), 10 + self.liveness_margin,
                                 "open() and publish(), each with timeout=5,")
            if isinstance(error, LogPublishError):
                errors.append(error)
                failed = True
                return False
            if error is not None:
                raise error
            accepted = outcome[0]
            assert type(accepted) is int and 0 <= accepted <= len(left), (
                f"publish() must return a count from 0 to {len(left)}; got {accepted!r}")
            failed = accepted == 0
            left = left[accepted:]
            return not left

        assert wait_until(attempt, timeout, interval=0.1), (
            f"{len(left)} of {len(batch)} records still not accepted after {timeout} s; last error: "
            f"{errors[-1] if errors else 'none, publish() returned 0'!r}")

    def wait_received(self, receiver: LogReceiver, expected: Sequence[LogRecord]) -> list[LogRecord]:
        """Waits until ``expected`` arrived; returns what this test's member received."""
        wait_until(lambda: len(self.received(receiver)) >= len(expected), self.wait_timeout, interval=0.05)
        return self.received(receiver)

    def assert_same(self, got: Sequence[LogRecord], expected: Sequence[LogRecord]) -> None:
        """Fails unless ``got`` holds ``expected``'s records, in order, with every field and the timestamp."""
        assert len(got) == len(expected), f"{len(expected)} records sent, {len(got)} received"
        for n, (received, sent) in enumerate(zip(got, expected, strict=True)):
            assert received.stream == sent.stream, (
                f"record {n}: stream {received.stream!r}, sent {sent.stream!r}")
            assert dict(received.fields) == dict(sent.fields), f"record {n}: the fields differ"
            assert abs(received.timestamp - sent.timestamp) <= self.timestamp_resolution, (
                f"record {n}: timestamp {received.timestamp!r}, sent {sent.timestamp!r}")

    def bounded(self, call: Callable[[], object], limit: float, what: str) -> BaseException | None:
        """Fails the test unless ``call`` returns within ``limit`` s; returns what it raised, or None."""
        error = _run_bounded(call, limit)
        if isinstance(error, _StillRunning):
            pytest.fail(f"{what} did not return within {limit} s", pytrace=False)
        return error

    @contextmanager
    def outage(self, receiver: LogReceiver) -> Iterator[None]:
        """Stops ``receiver`` for the duration of the block and starts it again, whatever happens."""
        receiver.stop()
        try:
            yield
        finally:
            receiver.start()

    def check_down_outcome(self, publisher: LogPublisher, receiver: LogReceiver, batch: Sequence[LogRecord],
                           call: Callable[[], int], limit: float, what: str) -> None:
        """Runs ``call`` (a publish while the receiver is down) and checks what it may say."""
        outcome: list[int] = []
        before = len(self.received(receiver))
        error = self.bounded(lambda: outcome.append(call()), limit, what)
        if error is not None:
            assert isinstance(error, LogPublishError), f"{what} raised {error!r}, not LogPublishError"
            return
        accepted = outcome[0]
        assert type(accepted) is int and 0 <= accepted < len(batch), (
            f"{what} returned {accepted!r}: with the receiver down it must raise LogPublishError or "
            f"return fewer than the {len(batch)} records")
        if Capability.ACK in self._capabilities:
            assert accepted == len(self.received(receiver)) - before, (
                f"{what} counted {accepted} records as acknowledged, but the stopped receiver got "
                f"{len(self.received(receiver)) - before}")

    # -- open and publish -----------------------------------------------------------------------------

    def test_open_then_publish_delivers_every_record_in_order_intact(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """Every field arrives as sent, unicode and 64 KiB lines included, in order, with its timestamp."""
        publisher = self.opened(make_publisher)
        batch = [self.log_record(0, _UNICODE), self.log_record(1, ""), self.log_record(2, _LONG),
                 *(self.log_record(n) for n in range(3, 10))]
        assert self.publish(publisher, batch, self.wait_timeout) == len(batch), (
            "a running receiver must accept the whole batch")
        self.assert_same(self.wait_received(receiver, batch), batch)

    def test_records_of_two_streams_arrive_each_on_its_own(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """Interleaved ``logs`` and ``health`` records arrive with their streams, DOUBLE values as floats."""
        publisher = self.opened(make_publisher)
        batch = [self.health_record(0, "memory_consumption", 42.5), self.log_record(1),
                 self.health_record(2, "load_average", 0.0), self.log_record(3),
                 self.health_record(4, "load_average", 123.25)]
        assert self.publish(publisher, batch, self.wait_timeout) == len(batch)
        got = self.wait_received(receiver, batch)
        self.assert_same(got, batch)
        assert all(type(r.fields["value"]) is float for r in got if r.stream == "health")

    def test_a_full_batch_and_the_next_arrive_in_order(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """Two batches of ``batch_size`` (500) records arrive complete, in order."""
        publisher = self.opened(make_publisher)
        first = [self.log_record(n) for n in range(500)]
        second = [self.log_record(n) for n in range(500, 1000)]
        self.deliver_eventually(publisher, first, self.wait_timeout)
        self.deliver_eventually(publisher, second, self.wait_timeout)
        self.assert_same(self.wait_received(receiver, first + second), first + second)

    def test_open_again_on_an_open_publisher_is_harmless(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """The core opens a publisher again after a failed batch; an open publisher takes that in stride."""
        publisher = self.opened(make_publisher)
        publisher.open(self.streams, timeout=self.wait_timeout)
        batch = [self.log_record(0)]
        assert self.publish(publisher, batch, self.wait_timeout) == 1
        self.assert_same(self.wait_received(receiver, batch), batch)

    @requires(Capability.ACK)
    def test_with_ack_accepted_records_are_at_the_receiver_when_publish_returns(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """With ``ack``, what ``publish`` counts has reached the receiver by the time it returns."""
        publisher = self.opened(make_publisher)
        batch = [self.log_record(n) for n in range(20)]
        accepted = self.publish(publisher, batch, self.wait_timeout)
        assert accepted > 0
        self.assert_same(self.received(receiver)[:accepted], batch[:accepted])

    # -- outages ----------------------------------------------------------------------------------------

    def test_publish_while_the_receiver_is_down_fails_within_its_timeout(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """With the receiver stopped, ``publish(timeout=2)`` fails in time.

        It raises LogPublishError or returns fewer records than it was given; with ``ack``, exactly as
        many as the receiver got: none.
        """
        publisher = self.opened(make_publisher)
        self.deliver_eventually(publisher, [self.log_record(0)], self.wait_timeout)
        batch = [self.log_record(n) for n in range(1, 6)]
        with self.outage(receiver):
            self.check_down_outcome(publisher, receiver, batch, lambda: publisher.publish(batch, timeout=2),
                                    2 + self.liveness_margin, "publish(timeout=2) with the receiver stopped")

    def test_the_publish_timeout_setting_bounds_publish_while_the_receiver_is_down(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """Without a ``timeout`` argument, ``publish_timeout`` bounds a publish to a stopped receiver."""
        publisher = self.opened(make_publisher, publish_timeout=2)
        self.deliver_eventually(publisher, [self.log_record(0)], self.wait_timeout)
        batch = [self.log_record(n) for n in range(1, 6)]
        with self.outage(receiver):
            self.check_down_outcome(publisher, receiver, batch, lambda: publisher.publish(batch),
                                    2 + self.liveness_margin, "publish() with publish_timeout=2 and the "
                                                              "receiver stopped")

    def test_the_same_publisher_delivers_again_once_the_receiver_is_back(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """After an outage the same instance delivers again, as the core retries it.

        Every record arrives at least once, in the order sent.
        """
        publisher = self.opened(make_publisher)
        before = [self.log_record(n) for n in range(3)]
        during = [self.log_record(n) for n in range(3, 6)]
        after = [self.log_record(n) for n in range(6, 9)]
        self.deliver_eventually(publisher, before, self.wait_timeout)
        outcome: list[int] = []
        with self.outage(receiver):
            error = self.bounded(lambda: outcome.append(publisher.publish(during, timeout=2)),
                                 2 + self.liveness_margin, "publish(timeout=2) with the receiver stopped")
        if error is not None and not isinstance(error, LogPublishError):
            raise error
        accepted = outcome[0] if outcome else 0
        self.deliver_eventually(publisher, during[accepted:], self.reconnect_timeout)
        self.deliver_eventually(publisher, after, self.wait_timeout)
        sent = before + during + after
        wait_until(lambda: _first_occurrences(self.received(receiver), sent) == len(sent), self.wait_timeout,
                   interval=0.05)
        got = self.received(receiver)
        firsts = _dedupe(got)
        assert len(firsts) == len(sent), f"{len(sent) - len(firsts)} of {len(sent)} records never arrived"
        self.assert_same(firsts, sent)

    def test_open_while_the_receiver_is_down_returns_or_raises_within_its_timeout(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """``open(timeout=2)`` with the receiver stopped returns or raises LogPublishError in time.

        The publisher delivers once the receiver is back.
        """
        publisher = make_publisher()
        with self.outage(receiver):
            error = self.bounded(lambda: publisher.open(self.streams, timeout=2), 2 + self.liveness_margin,
                                 "open(timeout=2) with the receiver stopped")
            assert error is None or isinstance(error, LogPublishError), (
                f"open() raised {error!r}, not LogPublishError")
        batch = [self.log_record(0)]
        self.deliver_eventually(publisher, batch, self.reconnect_timeout)
        self.assert_same(_dedupe(self.wait_received(receiver, batch)), batch)

    # -- close ----------------------------------------------------------------------------------------

    def test_close_is_idempotent_and_needs_no_open(self, make_publisher: PublisherFactory) -> None:
        """Closing twice, or closing a publisher never opened, does not raise; ``flush`` first is fine."""
        never_opened = make_publisher()
        never_opened.close(self.close_timeout)
        never_opened.close(self.close_timeout)
        used = self.opened(make_publisher)
        self.deliver_eventually(used, [self.log_record(0)], self.wait_timeout)
        used.flush(self.close_timeout)
        used.close(self.close_timeout)
        used.close(self.close_timeout)

    def test_publish_after_close_raises_log_publish_error(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """A closed publisher refuses a batch with LogPublishError and delivers nothing."""
        publisher = self.opened(make_publisher)
        publisher.close(self.close_timeout)
        error = self.bounded(lambda: publisher.publish([self.log_record(0)], timeout=2),
                             2 + self.liveness_margin, "publish() after close()")
        assert isinstance(error, LogPublishError), f"expected LogPublishError, got {error!r}"
        assert self.received(receiver) == []

    def test_close_returns_within_its_timeout_when_the_receiver_is_gone(
            self, receiver: LogReceiver, make_publisher: PublisherFactory) -> None:
        """``close(timeout=2)`` with the receiver stopped returns in time, without raising."""
        publisher = self.opened(make_publisher)
        self.deliver_eventually(publisher, [self.log_record(0)], self.wait_timeout)
        with self.outage(receiver):
            error = self.bounded(lambda: publisher.close(timeout=2), 2 + self.liveness_margin,
                                 "close(timeout=2) with the receiver stopped")
        assert error is None, f"close() raised {error!r}"


def _key(record: LogRecord) -> tuple[str, str]:
    return record.stream, repr(sorted(record.fields.items()))


def _dedupe(records: Sequence[LogRecord]) -> list[LogRecord]:
    """``records`` without repeats (the same stream and fields): the first of each, in order."""
    seen: set[tuple[str, str]] = set()
    firsts = []
    for record in records:
        key = _key(record)
        if key not in seen:
            seen.add(key)
            firsts.append(record)
    return firsts


def _first_occurrences(got: Sequence[LogRecord], sent: Sequence[LogRecord]) -> int:
    """How many of ``sent`` are among ``got``."""
    keys = {_key(record) for record in got}
    return sum(_key(record) in keys for record in sent)
