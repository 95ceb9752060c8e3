"""The record sink's delivery: partial acceptance, and telling producers what became of their records."""

import logging
import threading

from pca_core.telemetry.records import RecordSink
from tests.support.publishers import Sink, numbers, record, warnings
from tests.support.waiting import wait_until

# --- Partial acceptance ----------------------------------------------------------------------------------


def test_what_a_publisher_did_not_accept_is_offered_again_in_order_and_only_that(scheduler):
    target = Sink(batch_size=5)
    target.takes = 2
    sink = RecordSink([target], scheduler)
    sink.emit([record("logs", n) for n in range(7)])
    sink.flush()  # one batch of 5, 2 accepted: the flush stops there rather than push harder
    assert target.batches == [5] and numbers(target.accepted) == [0, 1] and sink.pending["fake[0]"] == 5
    sink.flush()
    assert target.batches == [5, 5] and numbers(target.accepted) == [0, 1, 2, 3]
    target.takes = None
    sink.flush()
    assert numbers(target.accepted) == list(range(7)) and sink.pending["fake[0]"] == 0
    assert sink.dropped["fake[0]"] == 0


def test_records_pushed_out_mid_publish_and_not_accepted_are_counted_as_dropped(scheduler, caplog):
    caplog.set_level(logging.WARNING, logger="pca_core.telemetry.records")
    target = Sink(max_buffered=3)
    sink = RecordSink([target], scheduler)
    sink.emit([record("logs", n) for n in range(3)])
    target.takes = 1
    # While [0, 1, 2] is published, two more records push 0 and 1 out; only 0 is then accepted.
    target.during_publish = lambda: sink.emit([record("logs", 3), record("logs", 4)])
    sink.flush()
    target.during_publish, target.takes = None, None
    assert numbers(target.accepted) == [0]
    assert sink.dropped["fake[0]"] == 1 and sink.pending["fake[0]"] == 3
    sink.flush()
    assert numbers(target.accepted) == [0, 2, 3, 4]
    assert len(warnings(caplog, "fake[0]: 1 records were dropped")) == 1


# --- Delivery notification -------------------------------------------------------------------------------


class Outcomes(list):
    """An on_settled callback that keeps what it was told."""

    def __call__(self, delivered):
        self.append(delivered)


def test_a_producer_learns_when_every_publisher_of_the_stream_accepted_its_records(scheduler):
    first, second, health_only = Sink(), Sink(plugin="second"), Sink(["health"], plugin="health")
    second.down = True
    sink = RecordSink([first, second, health_only], scheduler)
    told = Outcomes()
    sink.emit([record("logs", 1), record("logs", 2)], on_settled=told)
    sink.flush()
    assert numbers(first.accepted) == [1, 2] and told == []  # the second has not got them yet
    second.down = False
    second.takes = 1
    sink.flush()
    assert told == []  # one of the two still waits
    second.takes = None
    sink.flush()
    assert told == [True]
    sink.flush()
    assert told == [True]  # once


def test_records_no_publisher_receives_are_settled_at_once(scheduler):
    sink = RecordSink([Sink(["health"])], scheduler)
    told = Outcomes()
    sink.emit([record("logs", 1)], on_settled=told)
    assert told == [True]
    empty = Outcomes()
    RecordSink([], scheduler).emit([record("logs", 1)], on_settled=empty)
    assert empty == [True]


def test_a_producer_learns_that_an_overflow_dropped_its_records(scheduler):
    down = Sink(max_buffered=2)
    down.down = True
    sink = RecordSink([down], scheduler)
    older, newer = Outcomes(), Outcomes()
    sink.emit([record("logs", 1), record("logs", 2)], on_settled=older)
    assert older == []
    sink.emit([record("logs", 3)], on_settled=newer)
    assert older == [] and newer == []  # 1 was dropped, but 2 may still be delivered
    sink.emit([record("logs", 4)], on_settled=newer)
    assert older == [False] and newer == []  # 2 was dropped too: the call is settled
    down.down = False
    sink.flush()
    assert numbers(down.accepted) == [3, 4] and older == [False] and newer == [True, True]


def test_one_call_larger_than_the_buffer_is_settled_once_when_done(scheduler):
    target = Sink(max_buffered=2)
    sink = RecordSink([target], scheduler)
    told = Outcomes()
    sink.emit([record("logs", n) for n in range(5)], on_settled=told)
    assert told == []  # three were dropped as emit added them, but two wait
    sink.flush()
    assert numbers(target.accepted) == [3, 4] and told == [False]  # once, when all were settled


def test_close_tells_the_producers_of_records_it_could_not_deliver(scheduler):
    down = Sink()
    down.down = True
    sink = RecordSink([down], scheduler)
    told = Outcomes()
    sink.emit([record("logs", 1)], on_settled=told)
    sink.close(5)
    assert told == [False] and sink.pending == {"fake[0]": 0}


def test_a_callback_that_raises_is_logged_and_delivery_goes_on(scheduler, caplog):
    target = Sink()
    sink = RecordSink([target], scheduler)

    def broken(_delivered):
        raise RuntimeError("a producer's bug")

    told = Outcomes()
    sink.emit([record("logs", 1)], on_settled=broken)
    sink.emit([record("logs", 2)], on_settled=told)
    with caplog.at_level(logging.ERROR, logger="pca_core.telemetry"):
        sink.flush()
    assert numbers(target.accepted) == [1, 2] and told == [True]
    assert any("delivery callback raised" in r.getMessage() for r in caplog.records)


def test_callbacks_may_come_from_another_thread_and_all_arrive(scheduler):
    target = Sink(flush_interval=0.01, batch_size=7)
    sink = RecordSink([target], scheduler)
    sink.start()
    told = Outcomes()

    def producer(n):
        for i in range(50):
            sink.emit([record("logs", n * 100 + i)], on_settled=told)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert wait_until(lambda: len(told) == 200)
    assert set(told) == {True} and len(target.accepted) == 200
    sink.close(5)
