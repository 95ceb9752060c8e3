"""Gson's own bytes for every Stratos event class, kept in the repository (tests/data/stratos)."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "stratos"
"""The sample directory: one ``<topic with dots>[.<variant>].json`` per event class, and README.md."""


def sample(name: str) -> bytes:
    """The bytes of ``<name>.json``, e.g. ``sample("topology.MemberActivatedEvent")``."""
    return (SAMPLES / f"{name}.json").read_bytes()


def sample_files() -> list[Path]:
    """Every sample file, sorted by name."""
    return sorted(SAMPLES.glob("*.json"))
