"""Canonical slash topics as AMQP addresses: routing keys on a topic exchange, the way RabbitMQ routes.

A topic becomes a routing key by turning each ``/`` into ``.``, and the key is appended to the address
prefix (``options.address_prefix``, ``/topic/`` by default: RabbitMQ's ``amq.topic`` exchange). Pattern
wildcards map to the exchange's: ``+`` (one level) to ``*``, ``#`` (the rest, or nothing) stays ``#``.
So ``instance/status/InstanceStartedEvent`` is published to ``/topic/instance.status.InstanceStartedEvent``
and ``topology/#`` is received from ``/topic/topology.#``: the routing key that RabbitMQ's MQTT plugin
gives the same topic, so MQTT and AMQP clients of one broker reach each other.

A received message's topic comes from its ``to`` address, else from its subject, which RabbitMQ sets to the
routing key for messages published over AMQP 0-9-1 or MQTT (this transport sets both).
"""

from __future__ import annotations

from pca_core.api import topic_matches, validate_pattern, validate_topic

MAX_KEY_BYTES = 255
"""RabbitMQ's limit on a routing key."""


class Addressing:
    """The address mapping of one transport.

    Args:
        prefix: what goes before the routing key, e.g. ``/topic/`` or ``/exchange/stratos/``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def address(self, topic: str) -> tuple[str, str]:
        """The address and routing key to publish ``topic`` to.

        Raises:
            ValueError: ``topic`` is not publishable, has a ``.`` in a level, or its key is too long.
        """
        validate_topic(topic)
        key = _key(topic)
        return self.prefix + key, key

    def source(self, pattern: str) -> str:
        """The address to receive the topics of ``pattern`` from.

        Raises:
            ValueError: ``pattern`` is invalid, or has a ``.`` or ``*`` in a level.
        """
        validate_pattern(pattern)
        if "*" in pattern:
            raise ValueError(f"pattern {pattern!r}: '*' is a wildcard on an AMQP topic exchange; use '+'")
        return self.prefix + _key(pattern).replace("+", "*")

    def topic(self, pattern: str, to: object, subject: object) -> str | None:
        """The canonical topic of a message received through a subscription to ``pattern``.

        A pattern without wildcards is the topic itself: the exchange routed the message by it. For a
        wildcard pattern the candidates are, in order, the message's ``to`` address (when it starts with
        the prefix) and its subject read as a routing key; the first that matches ``pattern`` wins, else
        the first candidate (None when there is none).
        """
        if "+" not in pattern and "#" not in pattern:
            return pattern
        candidates = []
        if isinstance(to, str) and to.startswith(self.prefix) and len(to) > len(self.prefix):
            candidates.append(to[len(self.prefix):].replace(".", "/"))
        if isinstance(subject, str) and subject:
            candidates.append(subject.replace(".", "/"))
        for candidate in candidates:
            if topic_matches(pattern, candidate):
                return candidate
        return candidates[0] if candidates else None


def _key(topic: str) -> str:
    if "." in topic:
        raise ValueError(f"topic {topic!r}: a level may not contain '.', which separates the levels of an "
                         f"AMQP routing key (the amqp transport writes '/' as '.')")
    key = topic.replace("/", ".")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"topic {topic!r}: longer than an AMQP routing key may be ({MAX_KEY_BYTES} bytes)")
    return key
