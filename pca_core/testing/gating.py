"""Marking a conformance test as needing capabilities, and skipping it for plugins that lack them."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import pytest

from pca_core.api.plugin import Capability
from pca_core.runtime import discovery

__all__ = ["missing_capabilities", "requires", "skip_undeclared", "suite_plugin"]

_F = TypeVar("_F", bound=Callable[..., Any])

# Where ``requires`` keeps the capabilities a test needs.
_REQUIRES = "_pca_requires"


def requires(*capabilities: Capability) -> Callable[[_F], _F]:
    """Marks a test of a conformance class as needing ``capabilities``.

    The test is skipped, before any fixture starts a server, for a plugin whose class does not declare
    every one of them in :attr:`pca_core.api.Plugin.capabilities`.

    Raises:
        ValueError: a capability is not a :class:`~pca_core.api.Capability` (a typo fails, never skips).
    """
    needed = tuple(Capability(c) for c in capabilities)

    def mark(test: _F) -> _F:
        setattr(test, _REQUIRES, (*getattr(test, _REQUIRES, ()), *needed))
        return test

    return mark


def missing_capabilities(test: object, declared: Collection[Capability]) -> list[Capability]:
    """The capabilities ``test`` was marked with by :func:`requires` that ``declared`` lacks, in order."""
    return [c for c in getattr(test, _REQUIRES, ()) if c not in declared]


def skip_undeclared(test: object, declared: Collection[Capability], what: str) -> None:
    """Skips ``test`` when ``declared`` lacks a capability it was marked with; ``what`` names the plugin."""
    missing = missing_capabilities(test, declared)
    if missing:
        pytest.skip(f"{what} does not declare capability " + ", ".join(repr(str(c)) for c in missing))


def suite_plugin(suite: object, group: str, kind: str) -> type[Any]:
    """The class of the plugin a conformance class tests: its ``plugin`` entry point in ``group``.

    Loaded through discovery, as the agent loads it, so the entry point and the load-time checks are
    tested too. Fails the test, saying what to do, when the class names no plugin.
    """
    name = getattr(suite, "plugin", None)
    if not name:
        pytest.fail(f"{type(suite).__name__}: set the class attribute plugin to the {kind}'s entry point "
                    f"name in {group!r}", pytrace=False)
    return discovery.load_plugin(group, name)
