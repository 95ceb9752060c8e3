"""The log tailer's records of several lines, its byte bound and the logs settings that configure them.

``poll()`` is called directly with a clock the test sets, so a flush timeout passes without waiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pca_core.api.errors import ConfigError
from pca_core.config.schema import LogsConfig, MultilineConfig
from pca_core.telemetry.records import RecordSink
from pca_core.telemetry.tailer import LogTailer, Multiline
from tests.core.test_tailer import Sink, append
from tests.core.test_tailer_delivery import Receiver

FIRST = r"\d{4}-\d\d-\d\d "  # a record starts with a date


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    return path


def tailer_for(log: Path, sink, clock: Clock, *, limit: int = 65536, timeout: float = 1.0, **options):
    return LogTailer([str(log)], sink, multiline=Multiline(FIRST, timeout, limit), max_line_bytes=limit,
                     clock=clock, **options)


def test_a_stack_trace_is_one_record_with_the_line_above_it(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock)
    tailer.poll()
    append(log, "2024-01-01 ERROR boom\r\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n2024-01-01 INFO next\n")
    tailer.poll()
    assert sink.lines() == ["2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)"]
    append(log, "  at g.h(I.java:3)\n")  # the held record grows
    tailer.poll()
    assert len(sink.lines()) == 1
    append(log, "2024-01-02 INFO after\n")
    tailer.poll()
    assert sink.lines()[1:] == ["2024-01-01 INFO next\n  at g.h(I.java:3)"]


def test_the_last_record_leaves_once_no_line_came_for_the_flush_timeout(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, timeout=2.0)
    tailer.poll()
    append(log, "2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  unfinish")
    tailer.poll()
    clock.now += 1.9
    tailer.poll()
    assert sink.lines() == []  # still within the timeout
    clock.now += 0.2
    tailer.poll()
    assert sink.lines() == ["2024-01-01 ERROR boom\n  at a.b(C.java:1)"]  # the unfinished line stays
    append(log, "ed\n2024-01-01 INFO next\n")
    tailer.poll()
    clock.now += 2.1
    tailer.poll()
    assert sink.lines()[1:] == ["  unfinished", "2024-01-01 INFO next"]


def test_lines_before_the_first_match_are_a_record_of_their_own(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = LogTailer([str(log)], sink, multiline=Multiline(FIRST, 1.0, 65536), clock=clock,
                       start_at_end=False)
    append(log, "tail of an earlier record\nmore of it\n2024-01-01 INFO first\n")
    tailer.poll()
    assert sink.lines() == ["tail of an earlier record\nmore of it"]


def test_a_record_never_grows_beyond_the_limit(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, limit=30)
    tailer.poll()
    append(log, "2024-01-01 ERROR boom\n" + "".join(f"  at frame {n}\n" for n in range(4))
            + "2024-01-01 INFO next\n")
    tailer.poll()
    assert sink.lines() == ["2024-01-01 ERROR boom", "  at frame 0\n  at frame 1",
                            "  at frame 2\n  at frame 3"]
    assert all(len(line.encode()) <= 30 for line in sink.lines())


def test_a_record_of_more_lines_than_the_room_goes_in_pieces_rather_than_stalling(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, max_unsettled=4)
    tailer.poll()
    frames = [f"  at frame {n}" for n in range(10)]
    append(log, "2024-01-01 ERROR boom\n" + "".join(frame + "\n" for frame in frames) + "2024-01-01 INFO\n")
    for _ in range(5):
        tailer.poll()
    assert "\n".join(sink.lines()) == "\n".join(["2024-01-01 ERROR boom", *frames])
    assert all(line.count("\n") < 4 for line in sink.lines())


def test_a_held_record_survives_a_restart_and_is_sent_once(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, position_file=positions)
    tailer.poll()
    append(log, "2024-01-01 INFO one\n2024-01-01 ERROR two\n  at a.b(C.java:1)\n")
    tailer.poll()
    tailer.close()  # the held record was read, not emitted: its lines are read again after the restart
    assert sink.lines() == ["2024-01-01 INFO one"]
    again = Sink()
    tailer = tailer_for(log, again, clock, position_file=positions)
    append(log, "  at d.e(F.java:2)\n")
    tailer.poll()
    clock.now += 1.5
    tailer.poll()
    tailer.close()
    assert again.lines() == ["2024-01-01 ERROR two\n  at a.b(C.java:1)\n  at d.e(F.java:2)"]


def test_a_rotated_file_sends_its_held_record_before_the_new_file_is_read(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, timeout=3600)
    tailer.poll()
    append(log, "2024-01-01 ERROR old\n  at a.b(C.java:1)\n")
    tailer.poll()
    log.rename(log.with_name("app.log.1"))
    append(log, "2024-01-02 INFO new\n")
    for _ in range(3):
        tailer.poll()
    assert sink.lines() == ["2024-01-01 ERROR old\n  at a.b(C.java:1)"]  # the new file's record is held


def test_a_truncated_file_sends_what_was_held_from_its_old_content(log: Path) -> None:
    sink, clock = Sink(), Clock()
    tailer = tailer_for(log, sink, clock, timeout=3600)
    tailer.poll()
    append(log, "2024-01-01 ERROR old\n  at a.b(C.java:1)\n")
    tailer.poll()
    log.write_bytes(b"")
    append(log, "2024-01-02 INFO new\n")
    tailer.poll()
    assert sink.lines() == ["2024-01-01 ERROR old\n  at a.b(C.java:1)"]


def test_reading_pauses_at_the_byte_bound_and_resumes_as_lines_are_delivered(log: Path, scheduler) -> None:
    receiver = Receiver()
    receiver.down = True
    sink = RecordSink([receiver], scheduler)
    tailer = LogTailer([str(log)], sink, max_unsettled_bytes=25)
    tailer.poll()
    lines = [f"line {n:04d} {'x' * 10}" for n in range(6)]  # 20 bytes each
    append(log, "".join(line + "\n" for line in lines))
    tailer.poll()
    tailer.poll()
    assert tailer.poll() == 0
    sink.flush()
    assert sink.pending == {"switchable[0]": 1}  # 20 bytes on their way, a second would pass 25
    receiver.down = False
    while len(receiver.lines()) < len(lines):
        assert tailer.poll() <= 2
        sink.flush()
    assert receiver.lines() == lines


def test_the_logs_settings_reach_the_tailer_as_the_config_names_them() -> None:
    config = LogsConfig(max_line_bytes=100, max_buffered_bytes=1000, positions_interval=0,
                        multiline=MultilineConfig(first_line=FIRST, flush_timeout=0.5))
    assert list(config.issues()) == []
    bad = LogsConfig(multiline=MultilineConfig(first_line="([", flush_timeout=0))
    assert [issue.key for issue in bad.issues()] == ["multiline.first_line", "multiline.flush_timeout"]


def test_a_bad_multiline_pattern_names_the_file_and_key(tmp_path: Path) -> None:
    from tests.core.test_config import PAYLOAD, load, write

    path = write(tmp_path, '[logs.multiline]\nfirst_line = "(["\n' + PAYLOAD)
    with pytest.raises(ConfigError, match=r"logs\.multiline\.first_line: a regular expression \("):
        load(path)
