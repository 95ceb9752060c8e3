"""The Stratos events: one class per event of the messaging component, decoding and encoding.

The body of a Stratos message is the bare Gson JSON of the event; the event class is carried only by the
topic (``topology/MemberActivatedEvent``). Decoding is tolerant (every field optional, unknown keys
ignored); encoding writes the Java names and omits nulls, as Gson does.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from pca_core.api.errors import PcaError
from pca_core.stratos.events.base import Event, WireObject
from pca_core.stratos.events.wire import *  # noqa: F403 - the generated classes are this package's API
from pca_core.stratos.events.wire import EVENT_CLASSES
from pca_core.stratos.excerpt import bounded, excerpt

_E = TypeVar("_E", bound=Event)

BY_TOPIC: dict[str, type[Event]] = {cls.TOPIC: cls for cls in EVENT_CLASSES}
"""Every event class by its canonical topic."""

BY_NAME: dict[str, type[Event]] = {cls.__name__: cls for cls in EVENT_CLASSES}
"""Every event class by its name, the last segment of its topic (what the agent dispatches on)."""

_decoders = {cls: msgspec.json.Decoder(cls) for cls in EVENT_CLASSES}
_encoder = msgspec.json.Encoder()


class EventDecodeError(PcaError):
    """A message that does not decode as the event its topic names.

    Its text quotes the topic as a bounded excerpt: a topic, like a body, is the publisher's to choose.

    Attributes:
        topic: the message's topic.
        where: the JSON path of the offending value (``$`` for the whole body), or "" for the topic.
        why: what was wrong.
    """

    def __init__(self, topic: str, where: str, why: str) -> None:
        self.topic = topic
        self.where = where
        self.why = why
        super().__init__(f"{bounded(topic)}: {where + ': ' if where else ''}{why}")


class UnknownEventError(EventDecodeError):
    """A topic whose last segment names no Stratos event: a newer control plane's event, or a stray topic.

    Attributes:
        name: that last segment.
    """

    def __init__(self, topic: str, name: str) -> None:
        self.name = name
        super().__init__(topic, "", f"no Stratos event is named {excerpt(name)}")


def event_class(topic: str) -> type[Event]:
    """The event class for ``topic``, by its last segment (so the AMQP dotted form works too).

    Raises:
        UnknownEventError: no Stratos event has that name.
    """
    name = topic.rpartition("/")[2].rpartition(".")[2]
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownEventError(topic, name) from None


def decode(topic: str, payload: bytes | str) -> Event:
    """Decodes a message body as the event its topic names.

    Whatever the body (nested past any depth, numbers out of range, invalid UTF-8), the only error is
    :class:`EventDecodeError`; its text names no part of the body but a JSON path.

    Raises:
        UnknownEventError: the topic names no event.
        EventDecodeError: the body is not JSON of that event's shape.
    """
    cls = event_class(topic)
    try:
        return _decoders[cls].decode(payload)
    except msgspec.ValidationError as exc:
        why, _, where = str(exc).partition(" - at `")
        raise EventDecodeError(topic, where.rstrip("`") or "$", why.replace("`", "")) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(topic, "$", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EventDecodeError(topic, "$", "nested too deeply to decode") from None
    except UnicodeError:  # a str body with lone surrogates: it has no UTF-8 form
        raise EventDecodeError(topic, "$", "not valid JSON: not encodable as UTF-8") from None


def decode_as(cls: type[_E], payload: bytes | str) -> _E:
    """Decodes a body as ``cls``, whatever topic it came on.

    Raises:
        EventDecodeError: as :func:`decode`.
    """
    event = decode(cls.TOPIC, payload)
    assert isinstance(event, cls)
    return event


def encode(event: WireObject) -> bytes:
    """The event's body as Gson would write it (Java names, nulls left out)."""
    return _encoder.encode(event)


__all__ = [
    "BY_NAME", "BY_TOPIC", "EVENT_CLASSES", "Event", "EventDecodeError", "UnknownEventError", "WireObject",
    "decode", "decode_as", "encode", "event_class",
    *(cls.__name__ for cls in EVENT_CLASSES),
]
