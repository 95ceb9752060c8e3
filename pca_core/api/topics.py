"""Canonical topics: slash-separated names and MQTT-style patterns (``+`` one level, ``#`` the rest)."""

from __future__ import annotations


def validate_topic(topic: str) -> None:
    """Raises ValueError unless ``topic`` is a publishable topic (non-empty, no wildcards)."""
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"not a publishable topic: {topic!r} (non-empty, no '+' or '#')")


def validate_pattern(pattern: str) -> None:
    """Raises ValueError unless ``pattern`` is a valid subscription pattern.

    ``+`` must fill a whole level; ``#`` must fill the last level.
    """
    if not pattern:
        raise ValueError("empty topic pattern")
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"invalid pattern {pattern!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"invalid pattern {pattern!r}: '+' must be a whole level")


def topic_matches(pattern: str, topic: str) -> bool:
    """Tells whether ``topic`` matches ``pattern`` with MQTT semantics.

    ``a/#`` matches ``a`` itself and everything below it; ``+`` matches exactly one level, including an
    empty one.
    """
    pattern_levels = pattern.split("/")
    topic_levels = topic.split("/")
    for i, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(pattern_levels) == len(topic_levels)

