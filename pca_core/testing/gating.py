"""Marking a conformance test as needing capabilities, and skipping it for plugins that lack them."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from pca_core.api.plugin import Capability

__all__ = ["missing_capabilities", "requires"]

_F = TypeVar("_F", bound=Callable[..., Any])

# The attribute the transport suite's own copy of ``requires`` sets too, so either marks a test for both.
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
