"""The pytest plugin of pca-core, loaded through the ``pytest11`` entry point ``pca_transport_conformance``.

The conformance suites' fixtures live on :class:`pca_core.testing.TransportConformance` and
:class:`pca_core.testing.LogPublisherConformance` themselves, so a plugin's tests only subclass one and
provide brokers or receivers. This module adds what a class cannot: a marker on every test of a suite
(``transport_conformance``, ``log_publisher_conformance``), so that ``-m transport_conformance`` runs
only that suite and ``-m "not log_publisher_conformance"`` everything but that one.

Every pytest run in an environment where pca-core is installed imports this module, so it imports
neither suite nor any plugin: it looks only at the suites a test module already imported.
"""

from __future__ import annotations

import sys

import pytest

MARKER = "transport_conformance"
LOG_PUBLISHER_MARKER = "log_publisher_conformance"

# marker -> (the suite's module, its class, what the marker says)
_SUITES = {
    MARKER: ("pca_core.testing.transport", "TransportConformance", "the pca transport conformance suite"),
    LOG_PUBLISHER_MARKER: ("pca_core.testing.log_publisher", "LogPublisherConformance",
                           "the pca log publisher conformance suite"),
}


def pytest_configure(config: pytest.Config) -> None:
    """Registers the markers, which ``--strict-markers`` requires."""
    for marker, (_, _, what) in _SUITES.items():
        config.addinivalue_line("markers", f"{marker}: a test of {what} (pca_core.testing)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every collected test of a conformance class's subclass with the suite's marker."""
    for marker, (module_name, class_name, _) in _SUITES.items():
        module = sys.modules.get(module_name)
        if module is None:  # no test module imported the suite, so no test can belong to it
            continue
        suite = getattr(module, class_name)
        for item in items:
            cls = getattr(item, "cls", None)
            if isinstance(cls, type) and issubclass(cls, suite):
                item.add_marker(marker)
