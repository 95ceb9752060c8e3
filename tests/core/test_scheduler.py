"""Tests for pca_core.runtime.scheduler.

Nothing here sleeps to synchronise or asserts on durations: every wait is on an Event or a Condition
with a generous timeout, so a failure shows up as a timeout rather than as a flaky timing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from pca_core.api.errors import PcaError
from pca_core.runtime.scheduler import Scheduler, SchedulerBusy, Task

WAIT = 10.0  # seconds; only ever reached when a test is about to fail
TICK = 0.0005


class Counter:
    """A thread-safe counter that can be waited on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.value = 0

    def incr(self) -> None:
        with self._cond:
            self.value += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.value >= n, timeout)


@pytest.fixture
def make_scheduler() -> Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def make(workers: int = 2, queue_size: int = 16) -> Scheduler:
        scheduler = Scheduler(workers, queue_size=queue_size)
        scheduler.start()
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        assert scheduler.shutdown(WAIT)
        assert not any(thread.is_alive() for thread in scheduler.threads)


def wait_runs(marker: Counter, more: int) -> None:
    """Lets at least ``more`` further runs of a marker task happen."""
    assert marker.wait_for(marker.value + more)


def test_threads_are_named_daemon_threads_started_by_start() -> None:
    scheduler = Scheduler(3)
    assert scheduler.threads == ()
    scheduler.start()
    try:
        names = [t.name for t in scheduler.threads]
        assert names == ["pca-timer", "pca-worker-0", "pca-worker-1", "pca-worker-2"]
        assert all(t.daemon and t.is_alive() for t in scheduler.threads)
        with pytest.raises(RuntimeError):
            scheduler.start()
    finally:
        assert scheduler.shutdown(WAIT)


def test_invalid_arguments_are_rejected(make_scheduler: Callable[..., Scheduler]) -> None:
    with pytest.raises(ValueError):
        Scheduler(0)
    with pytest.raises(ValueError):
        Scheduler(1, queue_size=0)
    scheduler = make_scheduler()
    for interval in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            scheduler.every(interval, lambda: None, name="bad")
    with pytest.raises(ValueError):
        scheduler.every(1.0, lambda: None, name="bad", initial_delay=-1.0)
    with pytest.raises(ValueError):
        scheduler.call_later(-1.0, lambda: None, name="bad")


def test_periodic_task_runs_repeatedly_until_cancelled(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler()
    calls, marker = Counter(), Counter()
    task = scheduler.every(TICK, calls.incr, name="periodic")
    assert calls.wait_for(5)
    assert task.runs >= 4

    task.cancel()
    task.cancel()  # idempotent
    assert task.cancelled
    scheduler.every(TICK, marker.incr, name="marker")
    wait_runs(marker, 5)
    assert not task.running
    runs, called = task.runs, calls.value
    assert runs == called
    wait_runs(marker, 20)
    assert (task.runs, calls.value) == (runs, called)


def test_periodic_task_never_overlaps_itself(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(workers=4)
    lock = threading.Lock()
    active = peak = 0
    started, release = threading.Event(), threading.Event()
    calls, marker = Counter(), Counter()

    def slow() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        started.set()
        release.wait(WAIT)
        with lock:
            active -= 1
        calls.incr()

    task = scheduler.every(TICK, slow, name="slow", initial_delay=0)
    try:
        assert started.wait(WAIT)
        scheduler.every(TICK, marker.incr, name="marker")
        # The marker's ticks are as far apart as the slow task's, so 20 of them cover many skipped ticks.
        wait_runs(marker, 20)
        assert task.running
        assert task.runs == 0
        assert task.skipped >= 5
    finally:
        release.set()
    assert calls.wait_for(5)
    assert peak == 1
    assert task.skipped >= 5


def test_thread_count_is_fixed_however_many_ticks_run(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(workers=2)
    count = 0
    ten, done = threading.Event(), threading.Event()

    def tick() -> None:
        nonlocal count  # runs of one periodic task never overlap, so no lock is needed
        count += 1
        if count == 10:
            ten.set()
        elif count == 100_000:
            done.set()

    scheduler.every(1e-6, tick, name="fast")
    assert ten.wait(WAIT)
    threads_after_10 = threading.active_count()
    names_after_10 = sorted(t.name for t in threading.enumerate())
    assert done.wait(120)
    assert threading.active_count() == threads_after_10
    assert sorted(t.name for t in threading.enumerate()) == names_after_10
    assert {"pca-timer", "pca-worker-0", "pca-worker-1"} <= set(names_after_10)


def test_exception_is_logged_and_periodic_task_keeps_running(
    make_scheduler: Callable[..., Scheduler], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pca_core.runtime.scheduler")
    scheduler = make_scheduler()
    calls = Counter()

    def boom() -> None:
        calls.incr()
        raise RuntimeError("boom")

    task = scheduler.every(TICK, boom, name="exploder")
    assert calls.wait_for(3)
    task.cancel()
    # The third call's log record may still be on its way; the first two are certainly written.
    records = [r for r in caplog.records if r.name == "pca_core.runtime.scheduler"]
    assert len(records) >= 2
    assert all("exploder" in r.getMessage() for r in records)
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in records)
    assert task.runs >= 2


def test_submit_raises_scheduler_busy_when_queue_is_full(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(workers=2, queue_size=3)
    busy, release = Counter(), threading.Event()
    done = Counter()

    def block() -> None:
        busy.incr()
        release.wait(WAIT)

    try:
        scheduler.submit(block, name="block-0")
        scheduler.submit(block, name="block-1")
        assert busy.wait_for(2)
        queued = [scheduler.submit(done.incr, name=f"queued-{i}") for i in range(3)]
        with pytest.raises(SchedulerBusy) as excinfo:
            scheduler.submit(done.incr, name="one-too-many")
        assert isinstance(excinfo.value, PcaError)
        assert "one-too-many" in str(excinfo.value)
    finally:
        release.set()
    assert done.wait_for(3)
    assert [t.runs for t in queued] == [1, 1, 1]
    scheduler.submit(done.incr, name="after")
    assert done.wait_for(4)


def test_due_task_waits_for_room_when_queue_is_full(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler(workers=1, queue_size=1)
    busy, release, ran = threading.Event(), threading.Event(), threading.Event()
    try:
        scheduler.submit(lambda: (busy.set(), release.wait(WAIT)), name="block")
        assert busy.wait(WAIT)
        scheduler.submit(lambda: None, name="fills-the-queue")
        # Falls due while the queue is full; nothing else is scheduled to wake the timer later.
        task = scheduler.call_later(0, ran.set, name="late")
        with pytest.raises(SchedulerBusy):
            scheduler.submit(lambda: None, name="rejected")
    finally:
        release.set()
    assert ran.wait(WAIT)
    assert task.runs == 1


def test_call_later_runs_once(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler()
    calls, marker = Counter(), Counter()
    task = scheduler.call_later(TICK, calls.incr, name="once")
    assert calls.wait_for(1)
    scheduler.every(TICK, marker.incr, name="marker")
    wait_runs(marker, 20)
    assert calls.value == 1
    assert task.runs == 1
    assert not task.running


def test_initial_delay_sets_the_first_tick(make_scheduler: Callable[..., Scheduler]) -> None:
    scheduler = make_scheduler()
    ran = threading.Event()
    scheduler.every(3600, ran.set, name="hourly", initial_delay=0)
    assert ran.wait(WAIT)


def test_shutdown_lets_a_run_in_progress_finish() -> None:
    scheduler = Scheduler(2)
    scheduler.start()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    task = scheduler.submit(slow, name="slow")
    assert started.wait(WAIT)
    releaser = threading.Timer(0.05, release.set)
    releaser.start()
    try:
        assert scheduler.shutdown(WAIT) is True
    finally:
        release.set()
        releaser.join(WAIT)
    assert finished.is_set()
    assert task.runs == 1
    assert not any(t.is_alive() for t in scheduler.threads)
    assert scheduler.shutdown(0) is True  # idempotent


def test_shutdown_reports_a_run_that_cannot_finish_in_time() -> None:
    scheduler = Scheduler(1)
    scheduler.start()
    started, release = threading.Event(), threading.Event()
    scheduler.submit(lambda: (started.set(), release.wait(WAIT)), name="stuck")
    try:
        assert started.wait(WAIT)
        assert scheduler.shutdown(0.05) is False
        alive = [t for t in scheduler.threads if t.is_alive()]
        assert "pca-worker-0" in [t.name for t in alive]
        assert all(t.daemon for t in alive)
    finally:
        release.set()
    for thread in scheduler.threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in scheduler.threads)
    assert scheduler.shutdown(0) is True


def test_tasks_not_started_at_shutdown_never_run() -> None:
    scheduler = Scheduler(1, queue_size=8)
    scheduler.start()
    started, release = threading.Event(), threading.Event()
    calls = Counter()
    scheduler.submit(lambda: (started.set(), release.wait(WAIT)), name="blocker")
    try:
        assert started.wait(WAIT)
        not_started: list[Task] = [scheduler.submit(calls.incr, name=f"queued-{i}") for i in range(3)]
        not_started.append(scheduler.call_later(3600, calls.incr, name="later"))
        not_started.append(scheduler.every(3600, calls.incr, name="periodic"))
        assert scheduler.shutdown(0.05) is False
    finally:
        release.set()
    for thread in scheduler.threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in scheduler.threads)
    assert calls.value == 0
    assert all(t.cancelled and t.runs == 0 for t in not_started)


def test_nothing_can_be_scheduled_after_shutdown() -> None:
    scheduler = Scheduler(1)
    scheduler.start()
    assert scheduler.shutdown(WAIT)
    with pytest.raises(RuntimeError):
        scheduler.every(1.0, lambda: None, name="late")
    with pytest.raises(RuntimeError):
        scheduler.call_later(1.0, lambda: None, name="late")
    with pytest.raises(RuntimeError):
        scheduler.submit(lambda: None, name="late")
    with pytest.raises(RuntimeError):
        scheduler.start()
