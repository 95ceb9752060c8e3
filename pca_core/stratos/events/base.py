"""Base classes of the generated Stratos wire classes."""

from __future__ import annotations

from typing import ClassVar

import msgspec


class WireObject(msgspec.Struct, omit_defaults=True, kw_only=True, gc=False):
    """An object as Gson writes it: Java field names, nulls omitted, unknown keys ignored when decoding.

    Every field is optional (None when the key is absent), so an older or newer control plane's messages
    decode. Attribute names are the Java names in snake case; the JSON keys are the Java names.
    """

    JAVA: ClassVar[str] = ""
    """The Java class this mirrors."""
    MANIFEST: ClassVar[str] = ""
    """The class's name in the events manifest."""


class Event(WireObject):
    """A Stratos event: the whole body of one message, its class carried only by the topic."""

    TOPIC: ClassVar[str] = ""
    """The canonical topic, e.g. ``topology/MemberActivatedEvent``."""
