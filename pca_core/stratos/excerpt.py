"""Bounded excerpts of received content for log lines and error messages.

A message's body, topic and the events decoded from it come from the broker, so from anyone who may
publish there; a log line quotes at most :data:`EXCERPT_CHARS` characters of them, never the whole.
"""

from __future__ import annotations

EXCERPT_CHARS = 200
"""What an excerpt keeps, in characters of the value's repr."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """The repr of ``value``, cut to ``limit`` characters and then told its full size.

    ``excerpt("ab" * 1000)`` is ``'ababab…' … (2000 characters)``; bytes give their size in bytes. A
    string or bytes value is cut before its repr is made, so a huge one costs no huge copy.
    """
    if isinstance(value, str | bytes | bytearray):
        size, unit = len(value), "bytes" if not isinstance(value, str) else "characters"
        text = repr(value[:limit])
    else:
        text = repr(value)
        size, unit = len(text), "characters"
    if size <= limit and len(text) <= limit + 3:  # + 3: a short string's quotes and bytes' b
        return text
    return f"{text[:limit]}… ({size} {unit})"


def bounded(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` itself when it has at most ``limit`` characters (a topic, a name); else its excerpt."""
    return text if len(text) <= limit else excerpt(text, limit)
