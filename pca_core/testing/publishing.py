"""The fixtures and helpers of the log publisher conformance suite, for it and for a plugin's own tests."""

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
from pca_core.testing._bounded import bounded, close_failures, lookup_fixture
from pca_core.testing.building import build_plugin
from pca_core.testing.gating import skip_undeclared, suite_plugin
from pca_core.testing.receiver import LogReceiver
from pca_core.testing.waiting import wait_until

__all__ = ["PublisherFactory", "PublisherHarness", "dedupe", "first_occurrences"]

_BASE_TIME = 1_700_000_000.125


class PublisherFactory(Protocol):
    """The type of the ``make_publisher`` fixture."""

    def __call__(self, **settings: Any) -> LogPublisher:
        """Builds a publisher of the plugin under test, pointed at the ``receiver``; closed at teardown.

        Args:
            **settings: other :class:`pca_core.api.PublisherConfig` fields (``publish_timeout``,
                ``batch_size``, ``streams``); ``options`` replaces the receiver's options table.
        """
        ...


class PublisherHarness:
    """What :class:`~pca_core.testing.LogPublisherConformance` is made of, short of its tests.

    Attributes: see :class:`~pca_core.testing.LogPublisherConformance`.
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
        return suite_plugin(self, discovery.LOG_PUBLISHERS, "log publisher")

    @pytest.fixture(autouse=True)
    def _conformance_gate(self, request: pytest.FixtureRequest,
                          publisher_class: type[LogPublisher]) -> None:
        # Runs before the other fixtures, so a skipped test starts no receiver.
        skip_undeclared(request.function, publisher_class.capabilities,
                        f"log publisher plugin {self.plugin!r}")
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
        extra = dict(lookup_fixture(request, "publisher_options", {}))
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
        failures = close_failures(
            ((f"{type(p).__name__}.close({self.close_timeout})",
              functools.partial(p.close, self.close_timeout)) for p in reversed(made)),
            self.close_timeout + self.liveness_margin)
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
        return bounded(call, limit, what)

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


def _key(record: LogRecord) -> tuple[str, str]:
    return record.stream, repr(sorted(record.fields.items()))


def dedupe(records: Sequence[LogRecord]) -> list[LogRecord]:
    """``records`` without repeats (the same stream and fields): the first of each, in order."""
    seen: set[tuple[str, str]] = set()
    firsts = []
    for record in records:
        key = _key(record)
        if key not in seen:
            seen.add(key)
            firsts.append(record)
    return firsts


def first_occurrences(got: Sequence[LogRecord], sent: Sequence[LogRecord]) -> int:
    """How many of ``sent`` are among ``got``."""
    keys = {_key(record) for record in got}
    return sum(_key(record) in keys for record in sent)
