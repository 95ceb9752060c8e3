"""Tests for pca_core.telemetry.tailer, on real files.

``poll()`` is called directly; the one test that runs on a scheduler waits on a Condition, never sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pca_core.api.log_publisher import LogRecord
from pca_core.runtime.scheduler import Scheduler
from pca_core.telemetry.tailer import LogTailer
from tests.support.waiting import wait_until

WAIT = 10.0  # seconds; only ever reached when a test is about to fail


class Sink:
    """Collects records; can be waited on."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self.batches = 0
        self._cond = threading.Condition()

    def emit(self, records: Sequence[LogRecord], *, on_settled=None) -> None:
        with self._cond:
            self.records.extend(records)
            self.batches += 1
            self._cond.notify_all()
        if on_settled is not None:
            on_settled(True)  # delivered as soon as it is taken

    def lines(self) -> list[str]:
        with self._cond:
            return [r.fields["line"] for r in self.records]

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.records) >= n, WAIT)


class FailingSink(Sink):
    """Raises on emit while ``failing`` is set."""

    failing = True

    def emit(self, records: Sequence[LogRecord], *, on_settled=None) -> None:
        if self.failing:
            raise RuntimeError("sink down")
        super().emit(records, on_settled=on_settled)


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def open_handles(path: Path) -> int:
    """How many descriptors of this process refer to ``path`` (Linux /proc)."""
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link in (target, f"{target} (deleted)"):
            count += 1
    return count


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.touch()
    return path


# --- Appending -----------------------------------------------------------------------------------------


def test_appended_lines_are_emitted_once_in_order_with_path_and_fields(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink, fields={"member_id": "m-1", "cluster_id": "c-1"}, clock=lambda: 42.0)
    assert tailer.poll() == 0
    append(log, "first\nsecond\n")
    assert tailer.poll() == 2
    append(log, "third\n")
    assert tailer.poll() == 1
    assert tailer.poll() == 0
    assert sink.records == [
        LogRecord("logs", 42.0, {"line": line, "path": str(log), "member_id": "m-1", "cluster_id": "c-1"})
        for line in ("first", "second", "third")
    ]
    tailer.close()


def test_a_partial_line_is_held_until_its_newline_arrives(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    append(log, "par")
    assert tailer.poll() == 0
    append(log, "tial\nnext")
    assert tailer.poll() == 1
    assert sink.lines() == ["partial"]
    append(log, "\n")
    assert tailer.poll() == 1
    assert sink.lines() == ["partial", "next"]


def test_crlf_line_endings_are_removed_and_empty_lines_kept(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "windows\r\n\nunix\n")
    tailer.poll()
    assert sink.lines() == ["windows", "", "unix"]


# --- Rotation, truncation, deletion ---------------------------------------------------------------------


def test_rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "1\n2\n")
    tailer.poll()
    append(log, "3\n")
    log.rename(log.with_name("app.log.1"))
    append(log.with_name("app.log.1"), "4\n")  # the writer has not reopened yet
    append(log, "5\n6\n")
    tailer.poll()
    append(log, "7\n")
    tailer.poll()
    assert sink.lines() == ["1", "2", "3", "4", "5", "6", "7"]
    assert {r.fields["path"] for r in sink.records} == {str(log)}


@needs_proc
def test_a_rotated_file_catches_late_writes_for_one_poll_then_is_closed(log: Path, sink: Sink) -> None:
    rotated = log.with_name("app.log.1")
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "old\n")
    log.rename(rotated)
    append(log, "new\n")
    tailer.poll()
    assert open_handles(rotated) == 1 and open_handles(log) == 1
    append(rotated, "late")  # a last write, without its newline, before the writer reopens
    tailer.poll()
    assert open_handles(rotated) == 1
    tailer.poll()  # nothing more came: the rotated file is done, its unfinished line emitted
    assert open_handles(rotated) == 0 and open_handles(log) == 1
    assert sink.lines() == ["old", "new", "late"]
    tailer.close()
    assert open_handles(log) == 0


def test_a_rotated_file_with_a_backlog_is_drained_before_its_successor(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink, read_chunk=4)
    tailer.poll()
    append(log, "a1\na2\na3\na4\n")
    log.rename(log.with_name("app.log.1"))
    append(log, "b1\n")
    polls = 0
    while len(sink.records) < 5:
        polls += 1
        assert polls < 10
        tailer.poll()
    assert sink.lines() == ["a1", "a2", "a3", "a4", "b1"]


def test_copytruncate_is_read_again_from_the_start(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "before one\nbefore two\n")
    tailer.poll()
    shutil.copyfile(log, log.with_name("app.log.1"))
    with log.open("r+b") as handle:
        handle.truncate(0)
    append(log, "after\n")
    tailer.poll()
    assert sink.lines() == ["before one", "before two", "after"]


@needs_proc
def test_a_deleted_file_is_read_to_its_end_closed_and_followed_again_when_recreated(
    log: Path, sink: Sink
) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "last words\n")
    log.unlink()
    tailer.poll()
    tailer.poll()
    assert open_handles(log) == 0
    append(log, "reborn\n")
    tailer.poll()
    assert sink.lines() == ["last words", "reborn"]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path, sink: Sink) -> None:
    path = tmp_path / "later.log"
    tailer = LogTailer([str(path)], sink, start_at_end=True)
    assert tailer.poll() == 0
    append(path, "hello\nworld\n")
    assert tailer.poll() == 2
    assert sink.lines() == ["hello", "world"]


def test_a_glob_picks_up_a_second_matching_file_later(tmp_path: Path, sink: Sink) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    append(first, "old content\n")
    (tmp_path / "notes.txt").write_text("not matched\n")
    tailer = LogTailer([str(tmp_path / "*.log")], sink)
    assert tailer.poll() == 0
    append(first, "a1\n")
    append(second, "b1\nb2\n")
    append(tmp_path / "notes.txt", "still not matched\n")
    assert tailer.poll() == 3
    assert [(r.fields["path"], r.fields["line"]) for r in sink.records] == [
        (str(first), "a1"), (str(second), "b1"), (str(second), "b2"),
    ]


def test_a_rotated_file_still_matched_by_the_glob_is_not_read_again(tmp_path: Path, sink: Sink) -> None:
    log = tmp_path / "app.log"
    append(log, "")
    tailer = LogTailer([str(tmp_path / "app.log*")], sink)
    tailer.poll()
    append(log, "1\n")
    tailer.poll()
    log.rename(tmp_path / "app.log.1")  # still matches the pattern: the same inode, the same offset
    append(log, "2\n")
    append(tmp_path / "app.log.1", "late\n")
    tailer.poll()
    tailer.poll()
    assert sorted(sink.lines()) == ["1", "2", "late"]


def test_a_file_matched_twice_is_read_once(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log), str(log.parent / "*.log")], sink)
    tailer.poll()
    append(log, "once\n")
    tailer.poll()
    assert sink.lines() == ["once"]


# --- Where to start -------------------------------------------------------------------------------------


def test_start_at_end_true_skips_existing_content(log: Path, sink: Sink) -> None:
    append(log, "old\n")
    tailer = LogTailer([str(log)], sink, start_at_end=True)
    append(log, "written before the first poll\n")
    tailer.poll()
    assert sink.lines() == ["written before the first poll"]


def test_start_at_end_false_reads_existing_content(log: Path, sink: Sink) -> None:
    append(log, "old\n")
    tailer = LogTailer([str(log)], sink, start_at_end=False)
    append(log, "new\n")
    tailer.poll()
    assert sink.lines() == ["old", "new"]


def test_start_at_end_keeps_a_line_being_written_whole(log: Path, sink: Sink) -> None:
    append(log, "old\nhalf a ")
    tailer = LogTailer([str(log)], sink, start_at_end=True)
    tailer.poll()
    append(log, "line\n")
    tailer.poll()
    assert sink.lines() == ["half a line"]


# --- Positions across restarts --------------------------------------------------------------------------


def test_restart_with_a_position_file_resumes_without_loss_or_repeats(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "state" / "positions.json"
    first = Sink()
    tailer = LogTailer([str(log)], first, position_file=positions)
    tailer.poll()
    append(log, "a\nb\nunfini")
    tailer.poll()
    tailer.close()
    assert first.lines() == ["a", "b"]
    append(log, "shed\nc\n")  # written while the agent is down

    second = Sink()
    tailer = LogTailer([str(log)], second, position_file=positions, start_at_end=True)
    tailer.poll()
    append(log, "d\n")
    tailer.poll()
    tailer.close()
    assert second.lines() == ["unfinished", "c", "d"]
    assert [p.name for p in positions.parent.iterdir()] == ["positions.json"]  # no temporary file left
    saved = json.loads(positions.read_text())
    assert [(f["path"], f["offset"]) for f in saved["files"]] == [(str(log), log.stat().st_size)]


def test_with_no_save_interval_positions_are_saved_after_each_poll_that_advanced(
        log: Path, tmp_path: Path, sink: Sink) -> None:
    positions = tmp_path / "positions.json"
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=0)
    tailer.poll()
    append(log, "x\n")
    tailer.poll()
    # No close: a crash after this poll must not read the line again.
    again = Sink()
    LogTailer([str(log)], again, position_file=positions, start_at_end=False).poll()
    assert sink.lines() == ["x"] and again.lines() == []


def test_positions_are_saved_at_most_once_per_save_interval_and_on_close(
        log: Path, tmp_path: Path, sink: Sink) -> None:
    positions = tmp_path / "positions.json"
    tailer = LogTailer([str(log)], sink, position_file=positions, save_interval=3600)
    tailer.poll()  # the first save: the watched patterns
    first = positions.stat().st_mtime_ns, positions.read_bytes()
    for line in ("x\n", "y\n"):
        append(log, line)
        tailer.poll()
    assert sink.lines() == ["x", "y"]
    assert (positions.stat().st_mtime_ns, positions.read_bytes()) == first  # not written since
    # A crash now reads the lines of the interval again (at least once), none is lost.
    again = Sink()
    LogTailer([str(log)], again, position_file=positions, start_at_end=False).poll()
    assert again.lines() == ["x", "y"]
    tailer.close()  # a close writes them
    last = Sink()
    LogTailer([str(log)], last, position_file=positions, start_at_end=False).poll()
    assert last.lines() == []


def test_a_rotation_while_the_agent_was_down_is_followed(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    tailer = LogTailer([str(log)], Sink(), position_file=positions)
    tailer.poll()
    append(log, "seen\n")
    tailer.poll()
    tailer.close()
    append(log, "written before the rotation\n")
    log.rename(log.with_name("app.log.1"))
    append(log, "written after the rotation\n")

    sink = Sink()
    tailer = LogTailer([str(log)], sink, position_file=positions, start_at_end=True)
    tailer.poll()
    assert sink.lines() == ["written before the rotation", "written after the rotation"]


def test_files_created_while_down_under_a_watched_glob_are_read_from_the_start(tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    logs = tmp_path / "logs"
    logs.mkdir()
    append(logs / "a.log", "old\n")
    tailer = LogTailer([str(logs / "*.log")], Sink(), position_file=positions)
    tailer.poll()
    tailer.close()
    append(logs / "b.log", "b while down\n")

    sink = Sink()
    LogTailer([str(logs / "*.log")], sink, position_file=positions, start_at_end=True).poll()
    assert sink.lines() == ["b while down"]


def test_a_pattern_new_to_the_position_file_starts_at_the_end(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    tailer = LogTailer([str(log)], Sink(), position_file=positions)
    tailer.poll()
    tailer.close()
    other = tmp_path / "other.log"
    append(other, "history\n")

    sink = Sink()
    tailer = LogTailer([str(log), str(other)], sink, position_file=positions, start_at_end=True)
    tailer.poll()
    append(other, "new\n")
    tailer.poll()
    assert sink.lines() == ["new"]


def test_closing_before_the_first_poll_saves_nothing(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    LogTailer([str(log)], Sink(), position_file=positions).close()
    assert not positions.exists()


def test_a_saved_position_that_no_longer_fits_the_file_starts_over(log: Path, tmp_path: Path) -> None:
    positions = tmp_path / "positions.json"
    tailer = LogTailer([str(log)], Sink(), position_file=positions)
    tailer.poll()
    append(log, "short\n")
    tailer.poll()
    tailer.close()
    # Rewritten in place while down, longer than before: the size check alone would not notice.
    log.write_text("a different file entirely\n")

    sink = Sink()
    LogTailer([str(log)], sink, position_file=positions).poll()
    assert sink.lines() == ["a different file entirely"]


def test_an_unreadable_position_file_is_reported_and_treated_as_a_first_run(
    log: Path, tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    positions = tmp_path / "positions.json"
    positions.write_text("")  # what a power failure can leave behind
    append(log, "old\n")
    with caplog.at_level(logging.WARNING, logger="pca_core.telemetry.tailer"):
        tailer = LogTailer([str(log)], sink, position_file=positions, start_at_end=True)
    assert "not a valid position file" in caplog.text
    tailer.poll()
    append(log, "new\n")
    tailer.poll()
    assert sink.lines() == ["new"]
    assert json.loads(positions.read_text())["patterns"] == [str(log)]


# --- Limits and decoding --------------------------------------------------------------------------------


def test_an_over_long_line_is_cut_at_max_line_bytes(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink, max_line_bytes=4)
    tailer.poll()
    append(log, "abcdefghij")  # no newline yet: must not be buffered beyond the limit
    tailer.poll()
    assert sink.lines() == ["abcd", "efgh"]
    append(log, "\nabcd\nxyz\n")
    tailer.poll()
    assert sink.lines() == ["abcd", "efgh", "ij", "abcd", "xyz"]


def test_a_cut_does_not_split_a_utf8_character(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink, max_line_bytes=2)
    tailer.poll()
    append(log, "aéb\n")  # 61 c3 a9 62
    tailer.poll()
    assert sink.lines() == ["a", "é", "b"]


def test_invalid_utf8_is_replaced(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, b"ok \xff\xfe end\n")
    tailer.poll()
    assert sink.lines() == ["ok \ufffd\ufffd end"]


def test_read_chunk_bounds_each_file_per_poll_so_others_are_not_starved(tmp_path: Path, sink: Sink) -> None:
    big, small = tmp_path / "big.log", tmp_path / "small.log"
    tailer = LogTailer([str(big), str(small)], sink, read_chunk=8, start_at_end=False)
    append(big, "".join(f"b{i:02d}\n" for i in range(25)))  # 4 bytes a line
    append(small, "s\n")
    assert tailer.poll() == 3
    assert sink.lines() == ["b00", "b01", "s"]
    polls = 1
    while tailer.poll():
        polls += 1
    assert polls == 13
    assert [line for line in sink.lines() if line != "s"] == [f"b{i:02d}" for i in range(25)]


# --- Errors ---------------------------------------------------------------------------------------------


def test_an_error_is_logged_once_per_file_and_kind(tmp_path: Path, sink: Sink,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    broken = tmp_path / "file" / "app.log"  # a path through a regular file: ENOTDIR
    with caplog.at_level(logging.WARNING, logger="pca_core.telemetry.tailer"):
        tailer = LogTailer([str(broken)], sink)
        for _ in range(5):
            tailer.poll()
    assert [r.getMessage() for r in caplog.records if str(broken) in r.getMessage()] == [
        f"log tailer: cannot stat {broken}: Not a directory (not repeated until it recovers)"
    ]


def test_lines_the_sink_refused_are_emitted_on_a_later_poll(log: Path) -> None:
    sink = FailingSink()
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    append(log, "kept\n")
    assert tailer.poll() == 0
    sink.failing = False
    assert tailer.poll() == 1
    assert sink.lines() == ["kept"]


def test_arguments_are_checked(log: Path, sink: Sink) -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LogTailer([str(log)], sink, max_line_bytes=0)
    with pytest.raises(ValueError, match="read_chunk"):
        LogTailer([str(log)], sink, read_chunk=0)


# --- Running ----------------------------------------------------------------------------------------------


def test_start_polls_on_the_scheduler_without_a_thread_of_its_own(log: Path, sink: Sink) -> None:
    scheduler = Scheduler(workers=2)
    scheduler.start()
    try:
        before = sorted(t.name for t in threading.enumerate())
        tailer = LogTailer([str(log)], sink)
        task = tailer.start(scheduler, interval=0.01, watch=False)
        assert task.name == "log-tailer"
        with pytest.raises(RuntimeError, match="already started"):
            tailer.start(scheduler)
        append(log, "one\ntwo\n")
        assert sink.wait_for(2)
        assert sorted(t.name for t in threading.enumerate()) == before
        tailer.close()
        assert task.cancelled
        assert sink.lines() == ["one", "two"]
    finally:
        assert scheduler.shutdown(WAIT)


class SettlingLater(Sink):
    """Takes records at once and says they were delivered only when told (as a publisher's delivery does)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list = []

    def emit(self, records: Sequence[LogRecord], *, on_settled=None) -> None:
        super().emit(records)
        self.waiting.append(on_settled)

    def deliver(self) -> None:
        waiting, self.waiting = self.waiting, []
        for on_settled in waiting:
            on_settled(True)


def test_a_busy_file_is_read_on_at_once_not_at_the_next_tick(log: Path, sink: Sink, scheduler) -> None:
    # More than one read takes (LINES_PER_READ) with room for little at a time: without reading on at
    # once, this would take hundreds of hour-long intervals.
    tailer = LogTailer([str(log)], sink, max_unsettled=300)
    tailer.poll()
    tailer.start(scheduler, interval=3600, watch=False)
    append(log, "".join(f"line {n}\n" for n in range(2500)))
    tailer.poll()  # the hour-long ticks would not; this one notices the lines, the rest follows
    assert sink.wait_for(2500)
    assert sink.lines() == [f"line {n}" for n in range(2500)]
    tailer.close()


def test_lines_waiting_for_room_are_read_once_the_sink_delivered_some(log: Path, scheduler) -> None:
    later = SettlingLater()
    tailer = LogTailer([str(log)], later, max_unsettled=100)
    tailer.poll()
    tailer.start(scheduler, interval=3600, watch=False)
    append(log, "".join(f"line {n}\n" for n in range(1000)))
    tailer.poll()
    assert later.wait_for(100) and len(later.records) == 100  # no room for more until delivered

    def delivered_all() -> bool:
        later.deliver()  # each delivery makes room, and the tailer reads on without its tick
        return len(later.records) == 1000

    assert wait_until(delivered_all)
    assert later.lines() == [f"line {n}" for n in range(1000)]
    tailer.close()


@needs_proc
def test_close_is_idempotent_and_releases_every_file(log: Path, sink: Sink) -> None:
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    assert open_handles(log) == 1
    tailer.close()
    tailer.close()
    assert open_handles(log) == 0
    append(log, "after close\n")
    assert tailer.poll() == 0
    with pytest.raises(RuntimeError, match="closed"):
        tailer.start(Scheduler())
