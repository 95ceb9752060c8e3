"""The pytest plugin of pca-core, loaded through the ``pytest11`` entry point ``pca_transport_conformance``.

The conformance suite's fixtures live on :class:`pca_core.testing.TransportConformance` itself, so a
plugin's tests only subclass it and provide brokers. This module adds what a class cannot: the
``transport_conformance`` marker on every test of the suite, so that ``-m transport_conformance`` runs
only the suite and ``-m "not transport_conformance"`` everything else.

Every pytest run in an environment where pca-core is installed imports this module, so it imports
neither the suite nor any transport plugin: it looks only at the suite a test module already imported.
"""

from __future__ import annotations

import sys

import pytest

MARKER = "transport_conformance"


def pytest_configure(config: pytest.Config) -> None:
    """Registers the marker, which ``--strict-markers`` requires."""
    config.addinivalue_line(
        "markers", f"{MARKER}: a test of the pca transport conformance suite (pca_core.testing)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every collected test of a :class:`~pca_core.testing.TransportConformance` subclass."""
    suite = sys.modules.get("pca_core.testing.transport")
    if suite is None:  # no test module imported the suite, so no test can belong to it
        return
    for item in items:
        cls = getattr(item, "cls", None)
        if isinstance(cls, type) and issubclass(cls, suite.TransportConformance):
            item.add_marker(MARKER)
