"""The log publisher conformance suite: what every LogPublisher plugin must do against a receiver it owns."""

from __future__ import annotations

from pca_core.api.errors import LogPublishError
from pca_core.api.plugin import Capability
from pca_core.testing.gating import requires
from pca_core.testing.publishing import PublisherFactory, PublisherHarness, dedupe, first_occurrences
from pca_core.testing.receiver import LogReceiver
from pca_core.testing.waiting import wait_until

__all__ = ["LogPublisherConformance", "PublisherFactory", "requires"]

_UNICODE = "ünïcödé, 日本語, emoji 🚀, quotes \" ' \\ and a tab\t"
_LONG = ("0123456789abcdefé日🚀" * 3000)[:65536]  # the tailer's longest line, in characters


class LogPublisherConformance(PublisherHarness):
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
        wait_until(lambda: first_occurrences(self.received(receiver), sent) == len(sent), self.wait_timeout,
                   interval=0.05)
        got = self.received(receiver)
        firsts = dedupe(got)
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
        self.assert_same(dedupe(self.wait_received(receiver, batch)), batch)

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
