"""The one retry schedule of pca: doubling ceilings, full jitter, a restart after a stable connection."""

import random

import pytest

from pca_core.api import Backoff, TransportConfig
from pca_core.api import backoff as backoff_module


def test_each_delay_is_drawn_below_a_ceiling_that_doubles_up_to_the_maximum():
    backoff = Backoff(1.0, 10.0, rng=random.Random(7))
    ceilings, delays = [], []
    for _ in range(8):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next())
    assert ceilings == [1, 2, 4, 8, 10, 10, 10, 10]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays), "full jitter: no two delays alike"
    assert backoff.attempts == 8
    backoff.reset()
    assert (backoff.attempts, backoff.ceiling()) == (0, 1)


def test_a_fleet_does_not_come_back_in_step():
    firsts = [Backoff(2.0, 60.0).next() for _ in range(50)]
    assert max(firsts) - min(firsts) > 0.5 and all(0 <= d <= 2 for d in firsts)


def test_a_short_connection_counts_as_a_failure_and_a_stable_one_starts_again(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(backoff_module.time, "monotonic", lambda: now[0])
    backoff = Backoff(1.0, 60.0)
    for _ in range(4):
        backoff.next()
    backoff.connected()
    now[0] += 1.0  # dropped at once: the schedule goes on
    backoff.lost()
    assert backoff.attempts == 5
    backoff.connected()
    now[0] += backoff_module.STABLE_AFTER  # lasted: the next delay is the first one's again
    assert backoff.lost() <= 1.0
    assert backoff.attempts == 1
    backoff.lost()  # a loss without a connection noted counts as a failed attempt
    assert backoff.attempts == 2


def test_the_slowest_pace_is_between_half_the_maximum_and_the_maximum():
    backoff = Backoff(1.0, 40.0)
    assert all(20 <= backoff.slowest() <= 40 for _ in range(100))


@pytest.mark.parametrize(("initial", "maximum", "multiplier"), [(0, 10, 2), (5, 1, 2), (1, 10, 0.5)])
def test_a_schedule_that_cannot_work_is_refused(initial, maximum, multiplier):
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, maximum, multiplier=multiplier)


def test_a_transport_gets_its_schedule_from_its_settings():
    backoff = TransportConfig(reconnect_delay=3.0, max_reconnect_delay=12.0).backoff()
    assert (backoff.initial, backoff.maximum) == (3.0, 12.0)
