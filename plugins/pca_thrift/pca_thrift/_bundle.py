"""Events packed into a ``ThriftEventBundle``: each value in the list of its attribute's type.

A receiver takes, per event, the next string as the stream id and the next long as the time stamp, then
one value per attribute of the stream's definition from the list of that attribute's type. Every
attribute therefore gets a value here, so a missing one never shifts the others: a missing string is sent
as ``"_null"`` (which a receiver reads as null), a missing number (or one that is not a number) as 0 and a
missing flag as false, since the databridge has no null for those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pca_thrift._events import Event
from pca_thrift._gen.data.ttypes import ThriftEventBundle
from pca_thrift.streams import text


def bundle(session_id: str, events: Iterable[Event], ids: Mapping[str, str]) -> ThriftEventBundle:
    """One bundle of ``events``, each under the id its stream has in ``ids`` (by stream name)."""
    ints: list[int] = []
    longs: list[int] = []
    doubles: list[float] = []
    bools: list[bool] = []
    strings: list[str] = []
    count = 0
    for stream, timestamp, values in events:
        count += 1
        strings.append(ids[stream.name])
        longs.append(timestamp)
        if stream.strings:  # the log streams: the common case, kept short
            strings += values
            continue
        for kind, value in zip(stream.types, values, strict=True):
            if kind == "STRING":
                strings.append(value if value.__class__ is str else text(value))
            elif kind in ("DOUBLE", "FLOAT"):
                doubles.append(_number(value, float, 0.0))
            elif kind == "LONG":
                longs.append(_number(value, int, 0))
            elif kind == "INT":
                ints.append(_number(value, int, 0))
            else:
                bools.append(bool(value))
    return ThriftEventBundle(sessionId=session_id, eventNum=count, intAttributeList=ints,
                             longAttributeList=longs, doubleAttributeList=doubles, boolAttributeList=bools,
                             stringAttributeList=strings)


def _number(value: Any, kind: type, missing: Any) -> Any:
    if value is None:
        return missing
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return missing
