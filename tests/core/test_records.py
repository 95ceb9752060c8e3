"""The record sink: routing, batching per publisher, retries, overflow, opening, shutdown."""

import logging
import threading

import pytest

from pca_core.api.errors import ConfigErrors, LogPublishError
from pca_core.api.log_publisher import Attribute, AttributeType, StreamDefinition
from pca_core.builtin.file import FileLogPublisher, FileOptions
from pca_core.config import PublisherConfig
from pca_core.runtime.scheduler import Scheduler
from pca_core.telemetry.records import RecordSink
from pca_core.testing import build_plugin
from tests.support.publishers import Sink, file_publisher, lines, numbers, record, warnings
from tests.support.waiting import wait_until


def test_records_reach_only_the_publishers_of_their_stream_in_order(scheduler, tmp_path):
    path = tmp_path / "health.jsonl"
    logs, both, health_file = Sink(["logs"]), Sink(), file_publisher(path, ["health"])
    sink = RecordSink([logs, both, health_file], scheduler)
    sink.emit([record("logs", 1), record("health", 2), record("logs", 3)])
    sink.emit([record("health", 4), record("other", 5)])
    assert sink.pending == {"fake[0]": 2, "fake[1]": 4, "file[2]": 2}
    sink.flush()
    assert numbers(logs.accepted) == [1, 3]
    assert numbers(both.accepted) == [1, 2, 3, 4]
    assert [(line["stream"], line["fields"]["n"]) for line in lines(path)] == [("health", 2), ("health", 4)]
    assert sink.pending == {"fake[0]": 0, "fake[1]": 0, "file[2]": 0}


def test_batches_are_at_most_batch_size_and_keep_the_order(scheduler):
    target = Sink(batch_size=4)
    sink = RecordSink([target], scheduler)
    sink.emit([record("logs", n) for n in range(10)])
    sink.flush()
    assert target.batches == [4, 4, 2]
    assert numbers(target.accepted) == list(range(10))


def test_a_failing_publisher_keeps_its_records_and_does_not_hold_up_the_others(scheduler, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="pca_core.telemetry.records")
    path = tmp_path / "records.jsonl"
    failing, fine = Sink(), file_publisher(path)
    failing.down = True
    sink = RecordSink([failing, fine], scheduler)
    sink.emit([record("logs", 1), record("logs", 2)])
    sink.flush()
    sink.emit([record("logs", 3)])
    sink.flush()
    assert [line["fields"]["n"] for line in lines(path)] == [1, 2, 3]
    assert failing.accepted == [] and sink.pending == {"fake[0]": 3, "file[1]": 0}
    assert len(warnings(caplog, "fake[0] failed")) == 1  # once per outage
    assert any(r.levelno == logging.DEBUG and "attempt 2 failed" in r.getMessage() for r in caplog.records)

    failing.down = False
    sink.emit([record("logs", 4)])
    sink.flush()
    assert numbers(failing.accepted) == [1, 2, 3, 4]  # exactly once, in order
    assert any(r.levelno == logging.INFO and "fake[0] delivers again" in r.getMessage()
               for r in caplog.records)
    sink.flush()
    assert numbers(failing.accepted) == [1, 2, 3, 4]
    assert [line["fields"]["n"] for line in lines(path)] == [1, 2, 3, 4]

    failing.down = True  # a second outage warns again
    sink.emit([record("logs", 5)])
    sink.flush()
    assert len(warnings(caplog, "fake[0] failed")) == 2


def test_the_periodic_flush_retries_a_failing_publisher_until_it_recovers(scheduler, tmp_path):
    path = tmp_path / "records.jsonl"
    failing, fine = Sink(flush_interval=0.01), file_publisher(path, flush_interval=0.01)
    failing.down = True
    sink = RecordSink([failing, fine], scheduler)
    sink.start()
    sink.emit([record("logs", n) for n in range(3)])
    assert wait_until(lambda: len(lines(path)) == 3)  # not held up by the failing one
    assert wait_until(lambda: failing.attempts >= 3)
    sink.emit([record("logs", 3)])
    failing.down = False
    assert wait_until(lambda: len(failing.accepted) == 4)
    assert numbers(failing.accepted) == [0, 1, 2, 3]
    assert [line["fields"]["n"] for line in lines(path)] == [0, 1, 2, 3]
    sink.close(5)
    assert numbers(failing.accepted) == [0, 1, 2, 3]


def test_overflow_drops_the_oldest_and_warns_once_per_episode_with_the_count(scheduler, caplog):
    caplog.set_level(logging.INFO, logger="pca_core.telemetry.records")
    down, other = Sink(max_buffered=3), Sink(plugin="other", max_buffered=3)
    down.down = True
    sink = RecordSink([down, other], scheduler)
    sink.emit([record("logs", n) for n in range(3)])
    sink.flush()
    sink.emit([record("logs", 3), record("logs", 4)])
    sink.flush()
    sink.emit([record("logs", 5)])
    sink.emit([record("logs", 6)])
    assert sink.pending["fake[0]"] == 3 and sink.dropped == {"fake[0]": 4, "other[1]": 0}
    down.down = False
    sink.flush()
    assert numbers(down.accepted) == [4, 5, 6]
    episode = warnings(caplog, "records were dropped")
    assert len(episode) == 1
    assert "fake[0]" in episode[0].getMessage() and "4 records were dropped" in episode[0].getMessage()

    down.down = True  # a second episode gets its own warning and count
    sink.emit([record("logs", n) for n in range(7, 10)])
    sink.flush()
    sink.emit([record("logs", 10), record("logs", 11)])
    down.down = False
    sink.flush()
    assert numbers(down.accepted) == [4, 5, 6, 9, 10, 11]
    assert [r.getMessage() for r in warnings(caplog, "records were dropped")][1:] == [
        "log publisher fake[0]: 2 records were dropped, the oldest first, because its buffer of 3 was full"]
    assert sink.dropped == {"fake[0]": 6, "other[1]": 0}
    # The other publisher, which kept up, lost nothing.
    assert numbers(other.accepted) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_records_of_a_batch_being_published_are_dropped_only_if_the_batch_fails(scheduler, caplog):
    caplog.set_level(logging.WARNING, logger="pca_core.telemetry.records")
    target = Sink(max_buffered=3)
    sink = RecordSink([target], scheduler)
    sink.emit([record("logs", n) for n in range(3)])
    # A producer fills the buffer while the batch [0, 1, 2] is being published.
    target.during_publish = lambda: sink.emit([record("logs", 3), record("logs", 4)])
    sink.flush()
    target.during_publish = None
    assert numbers(target.accepted) == [0, 1, 2]  # delivered, so not lost
    assert sink.dropped["fake[0]"] == 0 and warnings(caplog, "records were dropped") == []
    sink.flush()
    assert numbers(target.accepted) == [0, 1, 2, 3, 4]  # no duplicates

    target.down = True
    sink.emit([record("logs", n) for n in (5, 6, 7)])
    target.during_publish = lambda: sink.emit([record("logs", 8)])
    sink.flush()  # publishing [5, 6, 7] fails after 8 pushed 5 out meanwhile: that loss is real
    assert sink.dropped["fake[0]"] == 1
    target.down, target.during_publish = False, None
    sink.flush()
    assert numbers(target.accepted) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert len(warnings(caplog, "fake[0]: 1 records were dropped")) == 1


def test_close_delivers_what_is_buffered_then_flushes_and_closes_the_publishers(scheduler, tmp_path):
    path = tmp_path / "records.jsonl"
    target, on_file = Sink(flush_interval=3600), file_publisher(path, flush_interval=3600)
    sink = RecordSink([target, on_file], scheduler)
    sink.start()
    sink.emit([record("logs", 1), record("health", 2)])
    sink.close(5)
    assert numbers(target.accepted) == [1, 2]
    assert [line["fields"]["n"] for line in lines(path)] == [1, 2]
    assert target.flushed and target.closed
    assert sink.pending == {"fake[0]": 0, "file[1]": 0}
    sink.close(5)  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        sink.emit([record("logs", 3)])


def test_close_with_a_publisher_down_reports_what_is_lost_and_still_closes_it(scheduler, caplog):
    caplog.set_level(logging.WARNING, logger="pca_core.telemetry.records")
    down = Sink()
    down.down = True
    sink = RecordSink([down], scheduler)
    sink.emit([record("logs", 1), record("logs", 2)])
    sink.close(5)
    assert down.closed
    assert len(warnings(caplog, "2 records could not be delivered before shutdown")) == 1


def test_a_periodic_flush_never_runs_while_another_flush_does(scheduler):
    target = Sink(flush_interval=0.01)
    sink = RecordSink([target], scheduler)
    (task,) = sink.start()
    sink.emit([record("logs", 1)])
    seen = []

    def while_publishing():
        if not seen:  # the first publish: let periodic ticks fall due while it is running
            runs = task.runs
            seen.append(wait_until(lambda: task.runs >= runs + 3))
            seen.append(target.attempts)

    target.during_publish = while_publishing
    sink.flush()
    assert seen == [True, 1]  # the ticks ran and returned without publishing
    assert numbers(target.accepted) == [1]
    sink.close(5)
    assert numbers(target.accepted) == [1]


def test_the_sink_starts_no_thread_of_its_own(scheduler, tmp_path):
    path = tmp_path / "records.jsonl"
    sink = RecordSink([file_publisher(path, flush_interval=0.01)], scheduler)
    before = set(threading.enumerate())
    sink.start()
    sink.emit([record("health", 7)])
    assert wait_until(lambda: len(lines(path)) == 1)
    assert lines(path)[0] == {"stream": "health", "timestamp": 7.0, "fields": {"n": 7}}
    assert set(threading.enumerate()) == before
    sink.close(5)


# --- Per-publisher batching ------------------------------------------------------------------------------


def test_each_publisher_batches_with_its_own_settings(scheduler):
    small, large = Sink(batch_size=2), Sink(plugin="large", batch_size=5)
    sink = RecordSink([small, large], scheduler)
    sink.emit([record("logs", n) for n in range(7)])
    sink.flush()
    assert small.batches == [2, 2, 2, 1] and large.batches == [5, 2]
    assert numbers(small.accepted) == numbers(large.accepted) == list(range(7))


def test_each_publisher_is_delivered_to_every_flush_interval_of_its_own(scheduler):
    fast, slow = Sink(flush_interval=0.01), Sink(plugin="slow", flush_interval=3600)
    sink = RecordSink([fast, slow], scheduler)
    tasks = sink.start()
    assert [task.name for task in tasks] == ["record sink fake[0]", "record sink slow[1]"]
    assert sink.start() == tasks  # idempotent
    sink.emit([record("logs", 1)])
    assert wait_until(lambda: numbers(fast.accepted) == [1])
    assert slow.attempts == 0  # its first delivery is an hour away
    sink.close(5)
    assert numbers(slow.accepted) == [1]  # close delivers what is left


def test_a_full_batch_is_delivered_at_once_a_partial_one_at_the_flush_tick(scheduler):
    target = Sink(batch_size=5, flush_interval=3600)
    sink = RecordSink([target], scheduler)
    sink.start()
    sink.emit([record("logs", n) for n in range(4)])
    sink.emit([record("logs", 4), record("logs", 5)])  # a full batch now: no need to wait an hour
    assert wait_until(lambda: numbers(target.accepted) == [0, 1, 2, 3, 4, 5])
    sink.emit([record("logs", 6)])
    assert not wait_until(lambda: len(target.accepted) == 7, timeout=0.3)  # a trickle waits for the tick
    sink.close(5)
    assert numbers(target.accepted) == list(range(7))


def test_batches_filled_during_a_delivery_are_delivered_when_it_ends_not_at_the_tick(scheduler):
    target = Sink(batch_size=2, flush_interval=3600)
    started, release = threading.Event(), threading.Event()

    def first_waits() -> None:
        if target.attempts == 1:
            started.set()
            release.wait(10)

    target.during_publish = first_waits
    sink = RecordSink([target], scheduler)
    sink.start()
    sink.emit([record("logs", 0), record("logs", 1)])
    assert started.wait(10)
    sink.emit([record("logs", n) for n in range(2, 6)])  # two more batches while the first is on its way
    release.set()
    assert wait_until(lambda: numbers(target.accepted) == list(range(6)))  # no hour-long tick needed
    assert target.batches == [2, 2, 2]
    sink.close(5)


def test_no_full_batch_is_delivered_before_the_sink_starts(scheduler):
    target = Sink(batch_size=2, flush_interval=3600)
    sink = RecordSink([target], scheduler)
    sink.emit([record("logs", n) for n in range(4)])
    assert not wait_until(lambda: target.attempts > 0, timeout=0.3)
    sink.flush()
    assert numbers(target.accepted) == [0, 1, 2, 3]


def test_each_publisher_keeps_its_own_bound(scheduler):
    small, large = Sink(max_buffered=2), Sink(plugin="large", max_buffered=4)
    small.down = large.down = True
    sink = RecordSink([small, large], scheduler)
    sink.emit([record("logs", n) for n in range(5)])
    assert sink.pending == {"fake[0]": 2, "large[1]": 4}
    assert sink.dropped == {"fake[0]": 3, "large[1]": 1}
    assert sink.capacity("logs") == 2 and sink.capacity("other") == 0


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("batch_size", 0, "at least 1; got 0"),
    ("max_buffered", -1, "at least 1; got -1"),
    ("flush_interval", 0.0, "more than 0; got 0.0"),
    ("publish_timeout", -2.0, "more than 0; got -2.0"),
])
def test_batching_settings_out_of_range_are_config_errors(tmp_path, key, value, expected):
    config = PublisherConfig(plugin="file", options={"path": str(tmp_path / "x")}, **{key: value})
    with pytest.raises(ConfigErrors) as caught:
        build_plugin(FileLogPublisher, config, key="publishers[0]", source="agent.toml")
    assert [error.key for error in caught.value.errors] == [f"publishers[0].{key}"]
    assert expected in str(caught.value) and "agent.toml" in str(caught.value)
    with pytest.raises(ValueError, match=key):
        RecordSink([FileLogPublisher(config, FileOptions(path=str(tmp_path / "x")))], Scheduler(1))


# --- Opening ---------------------------------------------------------------------------------------------


STREAMS = [StreamDefinition("logs", "1", (Attribute("n", AttributeType.INT),)),
           StreamDefinition("health", "1", (Attribute("n", AttributeType.INT),))]


def test_a_publisher_is_opened_with_its_streams_before_its_first_batch_and_only_then(scheduler):
    logs, both = Sink(["logs"]), Sink(plugin="both")
    sink = RecordSink([logs, both], scheduler, streams=STREAMS)
    sink.flush()
    assert logs.opens == both.opens == []  # nothing to deliver: not opened yet
    sink.emit([record("logs", 1)])
    sink.flush()
    sink.emit([record("health", 2)])
    sink.flush()
    assert logs.opens == [["logs"]] and both.opens == [["logs", "health"]]
    assert logs.streams["logs"] is STREAMS[0]


@pytest.mark.parametrize("failure", ["raises", "accepts none"])
def test_a_publisher_is_opened_again_before_the_batch_after_a_failed_one(scheduler, failure):
    target = Sink(["logs"])
    sink = RecordSink([target], scheduler, streams=STREAMS)
    sink.emit([record("logs", 1)])
    sink.flush()
    if failure == "raises":
        target.down = True
    else:
        target.takes = 0
    sink.emit([record("logs", 2)])
    sink.flush()
    assert len(target.opens) == 1
    target.down, target.takes = False, None
    sink.flush()
    assert len(target.opens) == 2 and numbers(target.accepted) == [1, 2]
    sink.emit([record("logs", 3)])
    sink.flush()
    assert len(target.opens) == 2


def test_a_failing_open_keeps_the_records_and_is_tried_again(scheduler, caplog):
    target = Sink(["logs"])
    refusals = [LogPublishError("fake", "cannot define the stream")]

    def open_or_fail(streams, *, timeout=None):
        if refusals:
            raise refusals.pop()
        Sink.open(target, streams, timeout=timeout)

    target.open = open_or_fail
    sink = RecordSink([target], scheduler, streams=STREAMS)
    sink.emit([record("logs", 1)])
    sink.flush()
    assert target.attempts == 0 and sink.pending == {"fake[0]": 1}
    assert len(warnings(caplog, "cannot define the stream")) == 1
    sink.flush()
    assert target.opens == [["logs"]] and numbers(target.accepted) == [1]
