import json
import logging
import threading

import pytest

from pca_core.config import PublisherConfig
from pca_core.errors import LogPublishError
from pca_core.file_publisher import FileLogPublisher, FileOptions
from pca_core.log_publisher import LogPublisher, LogRecord
from pca_core.records import RecordSink
from pca_core.scheduler import Scheduler
from tests.support.waiting import wait_until


class Sink(LogPublisher):
    """A log publisher that keeps what it accepted and can be told to fail (a fake sink)."""

    def __init__(self, streams=("logs", "health")):
        super().__init__(PublisherConfig(plugin="fake", streams=tuple(streams)), None)
        self.accepted: list[LogRecord] = []
        self.down = False

    def publish(self, batch, *, timeout=None):
        if self.down:
            raise LogPublishError("fake", "sink is down")
        self.accepted.extend(batch)


def record(stream, n):
    return LogRecord(stream, float(n), {"n": n})


@pytest.fixture
def scheduler():
    s = Scheduler(2)
    s.start()
    yield s
    assert s.shutdown(5)


def test_records_reach_only_the_publishers_of_their_stream_in_order(scheduler):
    logs, health = Sink(["logs"]), Sink(["health"])
    sink = RecordSink([logs, health], scheduler)
    sink.emit([record("logs", 1), record("health", 2), record("logs", 3)])
    sink.flush()
    assert [r.fields["n"] for r in logs.accepted] == [1, 3]
    assert [r.fields["n"] for r in health.accepted] == [2]


def test_a_failing_publisher_keeps_its_records_and_does_not_hold_up_the_others(scheduler, caplog):
    caplog.set_level(logging.INFO)
    failing, fine = Sink(), Sink()
    failing.down = True
    sink = RecordSink([failing, fine], scheduler)
    sink.emit([record("logs", 1), record("logs", 2)])
    sink.flush()
    sink.flush()
    assert [r.fields["n"] for r in fine.accepted] == [1, 2]
    assert failing.accepted == [] and sink.pending["fake[0]"] == 2
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1  # once per outage
    failing.down = False
    sink.emit([record("logs", 3)])
    sink.flush()
    assert [r.fields["n"] for r in failing.accepted] == [1, 2, 3]
    assert "recovered" in caplog.text


def test_overflow_drops_the_oldest_and_warns_once_per_episode(scheduler, caplog):
    down = Sink()
    down.down = True
    sink = RecordSink([down], scheduler, max_buffered=3)
    with caplog.at_level(logging.WARNING):
        sink.emit([record("logs", n) for n in range(5)])
    assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1
    down.down = False
    sink.flush()
    assert [r.fields["n"] for r in down.accepted] == [2, 3, 4]
    assert "2 records were dropped" in caplog.text


def test_the_periodic_flush_delivers_to_a_file(scheduler, tmp_path):
    path = tmp_path / "records.jsonl"
    publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path=str(path)))
    sink = RecordSink([publisher], scheduler, flush_interval=0.01)
    before = {t.name for t in threading.enumerate()}
    sink.start()
    sink.emit([record("health", 7)])
    assert wait_until(lambda: path.exists() and path.read_text().count("\n") == 1)
    assert json.loads(path.read_text())["fields"] == {"n": 7}
    assert {t.name for t in threading.enumerate()} == before
    sink.close(5)


def test_close_delivers_what_is_buffered(scheduler):
    target = Sink()
    sink = RecordSink([target], scheduler, flush_interval=3600)
    sink.start()
    sink.emit([record("logs", 1)])
    sink.close(5)
    assert [r.fields["n"] for r in target.accepted] == [1]
