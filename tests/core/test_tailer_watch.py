"""The tailer's directory watch (Linux inotify): lines are read when written, not at the next poll."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

from pca_core.telemetry.tailer import LogTailer
from pca_core.telemetry.tailer.watch import DirectoryWatch, watched_directories
from tests.core.test_tailer import WAIT, Sink, append
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux only")


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pca-tailer-watch"]


class Changes:
    """Counts the watch's calls; can be waited on."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for_more_than(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count > count, WAIT)


def test_an_appended_line_is_read_at_once_not_at_the_next_tick(tmp_path: Path, scheduler) -> None:
    log = tmp_path / "app.log"
    log.touch()
    sink = Sink()
    tailer = LogTailer([str(log)], sink)
    tailer.poll()
    tailer.start(scheduler, interval=3600)  # no tick comes within the test: only the watch can read it
    try:
        assert len(watch_threads()) == 1
        append(log, "one\n")
        assert sink.wait_for(1)
        append(log, "two\nthree\n")
        assert sink.wait_for(3)
        assert sink.lines() == ["one", "two", "three"]
    finally:
        tailer.close()
    assert watch_threads() == []


def test_a_file_created_in_a_watched_directory_is_read_at_once(tmp_path: Path, scheduler) -> None:
    sink = Sink()
    tailer = LogTailer([str(tmp_path / "*.log")], sink)
    tailer.poll()
    tailer.start(scheduler, interval=3600)
    try:
        append(tmp_path / "new.log", "hello\n")
        assert sink.wait_for(1)
        assert sink.lines() == ["hello"]
    finally:
        tailer.close()


def test_without_watch_the_tailer_starts_no_thread(tmp_path: Path, scheduler) -> None:
    tailer = LogTailer([str(tmp_path / "app.log")], Sink())
    tailer.start(scheduler, interval=3600, watch=False)
    try:
        assert watch_threads() == []
    finally:
        tailer.close()


def test_a_directory_that_appears_later_is_watched_from_the_next_refresh(tmp_path: Path) -> None:
    later = tmp_path / "later"
    changes = Changes()
    watch = DirectoryWatch.start([str(later)], changes)
    assert watch is not None
    try:
        assert watch.directories == []
        later.mkdir()
        watch.refresh()
        assert watch.directories == [str(later)]
        append(later / "app.log", "x\n")
        assert changes.wait_for_more_than(0)
    finally:
        watch.close()


def test_a_removed_directory_is_watched_again_once_it_is_back(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    changes = Changes()
    watch = DirectoryWatch.start([str(directory)], changes)
    assert watch is not None
    try:
        assert watch.directories == [str(directory)]
        shutil.rmtree(directory)
        assert wait_until(lambda: watch.directories == [])
        directory.mkdir()
        watch.refresh()
        assert watch.directories == [str(directory)]
        seen = changes.count
        append(directory / "app.log", "x\n")
        assert changes.wait_for_more_than(seen)
    finally:
        watch.close()


def test_a_callback_that_raises_is_logged_and_the_watch_goes_on(tmp_path: Path, caplog) -> None:
    changes = Changes()
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        changes()

    watch = DirectoryWatch.start([str(tmp_path)], flaky)
    assert watch is not None
    try:
        append(tmp_path / "a.log", "x\n")
        assert wait_until(lambda: calls)
        append(tmp_path / "a.log", "y\n")
        assert changes.wait_for_more_than(0)
        assert "the change callback raised" in caplog.text
    finally:
        watch.close()
    watch.close()  # idempotent
    assert watch_threads() == []


def test_watched_directories_skips_globbed_directories_and_repeats(tmp_path: Path) -> None:
    assert watched_directories([f"{tmp_path}/a.log", f"{tmp_path}/*.log", f"{tmp_path}/*/b.log",
                                f"{tmp_path}/sub/c.log"]) == [str(tmp_path), f"{tmp_path}/sub"]
    assert DirectoryWatch.start([], lambda: None) is None  # nothing to watch: no thread
