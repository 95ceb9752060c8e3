"""The lifecycle lane: jobs in order on one thread of its own; stop drops what waits and lets the job run."""

from __future__ import annotations

import threading

from pca_core.agent.lane import Lane


def test_jobs_run_in_order_on_the_lanes_one_thread_and_a_raising_job_does_not_stop_it():
    lane = Lane()
    ran: list[tuple[int, str]] = []
    done = threading.Event()
    for i in range(5):
        lane.post(f"job {i}", lambda i=i: ran.append((i, threading.current_thread().name)))
    lane.post("raises", lambda: 1 / 0)
    lane.post("last", done.set)
    lane.start()
    try:
        assert done.wait(10)
        assert ran == [(i, "pca-lifecycle") for i in range(5)]
    finally:
        lane.stop()
        assert lane.join(10)


def test_stop_lets_the_running_job_finish_drops_the_waiting_ones_and_refuses_new_ones():
    lane = Lane()
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking() -> None:
        started.set()
        release.wait(10)
        ran.append("blocking")

    lane.post("blocking", blocking)
    lane.post("waiting", lambda: ran.append("waiting"))
    lane.start()
    assert started.wait(10)
    assert lane.current == "blocking"
    lane.stop()
    lane.post("late", lambda: ran.append("late"))
    assert not lane.join(0)
    release.set()
    assert lane.join(10)
    assert ran == ["blocking"]


def test_join_of_a_lane_never_started_returns_at_once():
    lane = Lane()
    lane.stop()
    assert lane.join(0)
