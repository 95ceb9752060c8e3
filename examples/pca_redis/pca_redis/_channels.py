"""From canonical topics and patterns to Redis channels and channel globs.

A topic is used as the Redis channel name unchanged. A pattern without wildcards is a plain ``SUBSCRIBE`` to
that channel; a pattern with ``+`` or ``#`` becomes one ``PSUBSCRIBE`` glob. Redis globs know nothing of
levels (``*`` also matches ``/``), so a glob is a superset of its pattern and every message received through
one is checked against the subscription's own pattern before delivery.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Characters that have a meaning in a Redis glob; in a literal level each one is escaped with a backslash.
_GLOB_SPECIAL = re.compile(r"([\\?*\[\]])")


class RedisSubscription(NamedTuple):
    """One subscription as Redis sees it: the command and its argument.

    Attributes:
        command: ``subscribe`` for an exact channel, ``psubscribe`` for a glob; it is also the kind of the
            server's confirmation.
        name: the channel or the glob, as bytes (as the server names them in its replies).
    """

    command: str
    name: bytes


def redis_subscription(pattern: str) -> RedisSubscription:
    """The Redis subscription that receives at least every topic ``pattern`` matches."""
    levels = pattern.split("/")
    if "+" not in levels and "#" not in levels:
        return RedisSubscription("subscribe", pattern.encode())
    glob = "/".join("*" if level in ("+", "#") else _GLOB_SPECIAL.sub(r"\\\1", level) for level in levels)
    if len(levels) > 1 and levels[-1] == "#":
        # "a/#" matches "a" itself too, so the glob is "a*" rather than "a/*".
        glob = glob[: -len("/*")] + "*"
    return RedisSubscription("psubscribe", glob.encode())
