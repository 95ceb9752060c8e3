"""Running a call on a thread of its own with a deadline, and optional fixtures: what the suites share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

_R = TypeVar("_R")


@dataclass(slots=True)
class Outcome:
    """What a bounded call did: whether it returned in time, its value, and what it raised."""

    finished: bool = False
    value: Any = None
    error: BaseException | None = None


def run_bounded(call: Callable[[], object], limit: float, name: str = "pca-conformance-bounded") -> Outcome:
    """Runs ``call`` on a daemon thread and waits for it at most ``limit`` seconds.

    A call still running after ``limit`` is left behind on its daemon thread: the test that made it fails,
    and the thread cannot keep the interpreter from exiting.
    """
    outcome = Outcome()
    done = threading.Event()

    def run() -> None:
        try:
            outcome.value = call()
        except BaseException as exc:
            outcome.error = exc
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    outcome.finished = done.wait(limit)
    return outcome


def lookup_fixture(request: pytest.FixtureRequest, name: str, default: _R) -> _R:
    """The value of fixture ``name`` if one is defined (class, module or conftest), else ``default``."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError as exc:
        if exc.argname != name:
            raise
        return default


def close_failures(closes: Iterable[tuple[str, Callable[[], object]]], limit: float) -> list[str]:
    """Runs each ``(what, close)`` within ``limit`` seconds; one line per close that hung or raised."""
    failures = []
    for what, close in closes:
        outcome = run_bounded(close, limit)
        if not outcome.finished:
            failures.append(f"{what} did not return within {limit} s")
        elif outcome.error is not None:
            failures.append(f"{what} raised {outcome.error!r}")
    return failures


def bounded(call: Callable[[], object], limit: float, what: str) -> BaseException | None:
    """Fails the test unless ``call`` returns within ``limit`` s; returns what it raised, or None."""
    outcome = run_bounded(call, limit)
    if not outcome.finished:
        pytest.fail(f"{what} did not return within {limit} s", pytrace=False)
    return outcome.error
