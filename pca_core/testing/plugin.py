"""The pytest plugin of pca-core, loaded through the ``pytest11`` entry point ``pca_conformance``.

The conformance suites' fixtures live on the suite classes themselves, so a plugin's tests only subclass
one and provide servers. This module adds what a class cannot: a marker on every test of a suite —
``transport_conformance`` for :class:`pca_core.testing.TransportConformance`,
``log_publisher_conformance`` for :class:`pca_core.testing.LogPublisherConformance`,
``artifact_repo_conformance`` for :class:`pca_core.testing.ArtifactRepoConformance` — so that
``-m transport_conformance`` runs only that suite and ``-m "not transport_conformance"`` everything else.

Every pytest run in an environment where pca-core is installed imports this module, so it imports no
suite and no plugin: it knows the suites by the names of their modules and classes.
"""

from __future__ import annotations

import pytest

MARKER = "transport_conformance"
LOG_PUBLISHER_MARKER = "log_publisher_conformance"
ARTIFACT_REPO_MARKER = "artifact_repo_conformance"

# (the suite's module, its class, the marker of its tests, what the marker's help says)
_SUITES = (
    ("pca_core.testing.transport._suite", "TransportConformance", MARKER, "transport"),
    ("pca_core.testing.log_publisher", "LogPublisherConformance", LOG_PUBLISHER_MARKER, "log publisher"),
    ("pca_core.testing.artifact_repo", "ArtifactRepoConformance", ARTIFACT_REPO_MARKER,
     "artifact repository"),
)


def pytest_configure(config: pytest.Config) -> None:
    """Registers the markers, which ``--strict-markers`` requires."""
    for _module, _cls, marker, kind in _SUITES:
        config.addinivalue_line(
            "markers", f"{marker}: a test of the pca {kind} conformance suite (pca_core.testing)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every collected test of a subclass of a conformance suite with that suite's marker."""
    for item in items:
        cls = getattr(item, "cls", None)
        if not isinstance(cls, type):
            continue
        # By name, so that nothing is imported: a class derived from a suite has the suite in its MRO.
        bases = {(base.__module__, base.__qualname__) for base in cls.__mro__}
        for module, name, marker, _kind in _SUITES:
            if (module, name) in bases:
                item.add_marker(marker)
