"""Canonical slash topics as Kafka topic names, and subscription patterns as topic regexes.

A topic becomes a Kafka topic name by turning each ``/`` into ``options.separator`` (``.`` by default)
and putting ``options.prefix`` before it: ``instance/status/InstanceStartedEvent`` is the Kafka topic
``instance.status.InstanceStartedEvent``. A pattern becomes an anchored regular expression that the
consumer's pattern subscription matches against every topic of the cluster: ``+`` matches one level,
``#`` the rest (or nothing, so ``topology/#`` also matches ``topology``).
"""

from __future__ import annotations

import re

from pca_core.api import validate_pattern, validate_topic

MAX_NAME = 249
"""Kafka's limit on the length of a topic name."""
_LEGAL = re.compile(r"[A-Za-z0-9._-]*")


class Naming:
    """The topic mapping of one transport.

    Args:
        separator: what ``/`` becomes; one of ``.``, ``_``, ``-``.
        prefix: put before every topic name (e.g. a cluster's namespace); legal Kafka characters only.
    """

    def __init__(self, separator: str = ".", prefix: str = "") -> None:
        self.separator = separator
        self.prefix = prefix

    def name(self, topic: str) -> str:
        """The Kafka topic for ``topic``.

        Raises:
            ValueError: ``topic`` is not publishable, or has characters Kafka does not allow in a name
                (the separator among them), or its name is too long.
        """
        validate_topic(topic)
        return self._name(topic)

    def _name(self, topic: str) -> str:
        levels = topic.split("/")
        for level in levels:
            if self.separator in level or not _LEGAL.fullmatch(level.replace("+", "").replace("#", "")):
                raise ValueError(f"topic {topic!r}: a level may hold only letters, digits, '.', '_' and '-', "
                                 f"and not {self.separator!r}, which separates levels in Kafka topic names")
        name = self.prefix + self.separator.join(levels)
        if len(name) > MAX_NAME:
            raise ValueError(f"topic {topic!r}: its Kafka name is longer than {MAX_NAME} characters")
        return name

    def regex(self, pattern: str) -> str:
        """An anchored regular expression matching the Kafka names of the topics of ``pattern``.

        Raises:
            ValueError: ``pattern`` is invalid, or has characters Kafka does not allow in a name.
        """
        validate_pattern(pattern)
        self._name(pattern)
        sep = re.escape(self.separator)
        parts = []
        for level in pattern.split("/"):
            if level == "#":
                parts.append(None)
            elif level == "+":
                parts.append(f"[^{sep}]*")
            else:
                parts.append(re.escape(level))
        if parts[-1] is None:
            head = sep.join(p for p in parts[:-1] if p is not None)
            body = f"(?:{head}(?:{sep}.*)?)" if head else ".*"
        else:
            body = sep.join(p for p in parts if p is not None)
        return f"{re.escape(self.prefix)}{body}"

    def topic(self, name: str) -> str | None:
        """The canonical topic of a Kafka topic name, or None if it is not one of this naming's."""
        if not name.startswith(self.prefix):
            return None
        return name[len(self.prefix):].replace(self.separator, "/")
