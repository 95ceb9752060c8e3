"""The log tailer delivers at least once: positions follow what every publisher accepted, not what was read.

The tailer runs against the real record sink and a publisher that can be taken down; ``poll()`` and
``flush()`` are called directly, so nothing waits on time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogPublisher, LogRecord
from pca_core.config import PublisherConfig
from pca_core.telemetry.records import RecordSink
from pca_core.telemetry.tailer import LogTailer
from pca_core.telemetry.tailer.log_tailer import EMIT_GROUP


class Receiver(LogPublisher):
    """A log publisher whose receiver can be down, or take only part of each batch."""

    def __init__(self, streams=("logs",), **batching):
        super().__init__(PublisherConfig(plugin="switchable", streams=tuple(streams), **batching), None)
        self.received: list[LogRecord] = []
        self.down = False
        self.budget: int | None = None  # records it takes before it goes down; None: no limit

    def publish(self, batch, *, timeout=None):
        if self.down or self.budget == 0:
            raise LogPublishError("switchable", "the receiver is down")
        taken = list(batch)[: self.budget] if self.budget is not None else list(batch)
        if self.budget is not None:
            self.budget -= len(taken)
        self.received.extend(taken)
        return len(taken)

    def lines(self) -> list[str]:
        return [r.fields["line"] for r in self.received if r.stream == "logs"]


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def saved_offsets(positions: Path) -> list[tuple[str, int]]:
    return [(entry["path"], entry["offset"]) for entry in json.loads(positions.read_text())["files"]]


def open_handles(path: Path) -> int:
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += link in (target, f"{target} (deleted)")
    return count


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.touch()
    return path


@pytest.fixture
def positions(tmp_path: Path) -> Path:
    return tmp_path / "state" / "positions.json"


def restarted(log: Path, positions: Path, scheduler) -> tuple[LogTailer, Receiver, RecordSink]:
    """A new tailer, sink and healthy publisher, as after the agent restarted."""
    receiver = Receiver()
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, start_at_end=True, save_interval=0)
    return tailer, receiver, sink


def test_positions_wait_while_the_publisher_is_down_and_advance_once_it_is_back(log, positions, scheduler):
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "one\ntwo\n")
    assert tailer.poll() == 2
    sink.flush()
    tailer.poll()
    assert saved_offsets(positions) == [(str(log), 0)]  # read and handed over, but not delivered

    receiver.down = False
    sink.flush()
    assert receiver.lines() == ["one", "two"]
    assert saved_offsets(positions) == [(str(log), 0)]  # learnt on the next poll
    tailer.poll()
    assert saved_offsets(positions) == [(str(log), log.stat().st_size)]
    tailer.close()


def test_a_crash_reads_again_what_no_publisher_accepted(log, positions, scheduler):
    lines = [f"line {n}" for n in range(2 * EMIT_GROUP + 10)]
    receiver = Receiver()
    receiver.budget = EMIT_GROUP + 5  # it takes the first group and a few of the second, then goes down
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "".join(f"{line}\n" for line in lines))
    tailer.poll()
    sink.flush()
    tailer.poll()
    assert receiver.lines() == lines[: EMIT_GROUP + 5]
    # Saved: the end of the last call to the sink whose lines were all accepted.
    assert saved_offsets(positions) == [(str(log), sum(len(line) + 1 for line in lines[:EMIT_GROUP]))]
    # The agent dies here: no close, the sink's records are lost with it.

    again, receiver_again, sink_again = restarted(log, positions, scheduler)
    again.poll()
    sink_again.flush()
    assert receiver_again.lines() == lines[EMIT_GROUP:]  # 5 twice, none lost
    again.poll()
    assert saved_offsets(positions) == [(str(log), log.stat().st_size)]
    again.close()


def test_lines_the_sink_delivers_at_shutdown_after_the_tailer_closed_are_not_read_again(
        log, positions, scheduler):
    receiver = Receiver()
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "last\nwords\n")
    tailer.poll()
    # The agent's shutdown order: the tailer closes first, then the sink delivers what it holds.
    tailer.close()
    assert saved_offsets(positions) == [(str(log), 0)]
    sink.close(5)
    assert receiver.lines() == ["last", "words"]
    assert saved_offsets(positions) == [(str(log), log.stat().st_size)]

    again, receiver_again, sink_again = restarted(log, positions, scheduler)
    append(log, "after restart\n")
    again.poll()
    sink_again.flush()
    assert receiver_again.lines() == ["after restart"]
    again.close()


def test_lines_undelivered_at_shutdown_are_read_after_the_restart(log, positions, scheduler):
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "kept in the file\n")
    tailer.poll()
    tailer.close()
    sink.close(5)
    assert saved_offsets(positions) == [(str(log), 0)]

    again, receiver_again, sink_again = restarted(log, positions, scheduler)
    again.poll()
    sink_again.flush()
    assert receiver_again.lines() == ["kept in the file"]
    again.close()


def test_reading_pauses_at_max_unsettled_and_resumes_as_lines_are_delivered(log, scheduler):
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, max_unsettled=2)
    tailer.poll()
    append(log, "".join(f"{n}\n" for n in range(5)))
    assert tailer.poll() == 2
    assert tailer.poll() == 0  # the lines wait in the file, not in the sink
    sink.flush()
    assert sink.pending == {"switchable[0]": 2}
    receiver.down = False
    while len(receiver.lines()) < 5:
        assert tailer.poll() <= 2
        sink.flush()
    assert receiver.lines() == ["0", "1", "2", "3", "4"]
    assert tailer.poll() == 0


def test_lines_an_overflow_dropped_are_read_again(log, positions, scheduler):
    receiver = Receiver(streams=("logs", "health"), max_buffered=2)
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "a\nb\n")
    tailer.poll()
    sink.emit([LogRecord("health", 1.0, {"name": "load_average", "value": 1.0})] * 2)  # pushes a, b out
    assert sink.dropped == {"switchable[0]": 2}
    assert tailer.poll() == 2  # read again
    receiver.down = False
    sink.flush()
    tailer.poll()
    assert receiver.lines() == ["a", "b"]
    assert saved_offsets(positions) == [(str(log), log.stat().st_size)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_rotated_file_stays_followed_until_its_lines_are_delivered(log, positions, scheduler):
    rotated = log.with_name("app.log.1")
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "old\n")
    log.rename(rotated)
    append(log, "new\n")
    for _ in range(3):
        tailer.poll()
        sink.flush()
    assert open_handles(rotated) == 1  # read to its end, but nothing of it was delivered
    assert saved_offsets(positions) == [(str(log), 0), (str(log), 0)]  # the rotated file and the new one

    receiver.down = False
    sink.flush()
    tailer.poll()
    assert open_handles(rotated) == 0
    assert receiver.lines() == ["old", "new"]
    assert saved_offsets(positions) == [(str(log), log.stat().st_size)]
    tailer.close()


def test_a_crash_after_a_rotation_reads_the_undelivered_lines_of_the_rotated_file(log, positions, scheduler):
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "before the rotation\n")
    log.rename(log.with_name("app.log.1"))
    append(log, "after the rotation\n")
    tailer.poll()
    tailer.poll()
    # The agent dies with both lines undelivered.

    again, receiver_again, sink_again = restarted(log, positions, scheduler)
    again.poll()
    sink_again.flush()
    assert receiver_again.lines() == ["before the rotation", "after the rotation"]
    again.close()


def test_a_sink_that_refuses_part_way_keeps_what_it_took_and_gets_the_rest_later(log):
    class Refusing:
        """Takes one call, refuses the next, then takes everything again."""

        def __init__(self):
            self.calls = 0
            self.lines: list[str] = []

        def emit(self, records, *, on_settled=None):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("full for a moment")
            self.lines += [r.fields["line"] for r in records]
            on_settled(True)

    sink = Refusing()
    lines = [str(n) for n in range(EMIT_GROUP + 3)]
    tailer = LogTailer([str(log)], sink, start_at_end=False)
    append(log, "".join(f"{line}\n" for line in lines))
    tailer.poll()  # refused part way
    assert sink.lines == lines[:EMIT_GROUP]
    assert tailer.poll() == 3
    assert sink.lines == lines
