"""The Stratos databridge streams, made from the core's ``health`` and ``logs`` streams.

The names, definitions and attribute orders are those of the Stratos cartridge agent and of the CEP and
DAS configurations built for it: ``cartridge_agent_health_stats`` 1.0.0, and one log stream per tenant,
cluster and day, ``logs.<tenant>.<alias>.<yyyy.mm.dd>``. A receiver reads each event's values by walking
the definition's attributes in order, so :meth:`DatabridgeStream.row` gives a value for every attribute,
whatever the record lacks.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pca_core.api import LogRecord, StreamDefinition

HEALTH_STREAM: Final = "cartridge_agent_health_stats"
LOG_STREAM_PREFIX: Final = "logs"
VERSION: Final = "1.0.0"
NULL: Final = "_null"
"""What a missing string value is sent as; a receiver reads it as null (the databridge has no null for
numbers and flags: they are sent as 0 and false)."""
SUPER_TENANTS: Final = frozenset({"-1234", "-1"})
"""Tenant ids the log stream names as tenant ``0`` (the super tenant), as Stratos did."""

_HEALTH_IDS = ("cluster_id", "cluster_instance_id", "network_partition_id", "member_id", "partition_id")
_LOG_PAYLOAD = ("tenantID", "serverName", "appName", "logTime", "priority", "message", "logger", "ip",
                "instance", "stacktrace")


@dataclass(frozen=True, slots=True)
class DatabridgeStream:
    """One databridge stream definition and how a core record becomes its event.

    Attributes:
        name: the stream's name; ``name:version`` is the id WSO2 receivers give it.
        version: its version.
        definition: the JSON text ``defineStream`` sends.
        types: the type (``STRING``, ``DOUBLE``...) of every attribute, meta data first, then correlation
            data, then payload data: the order a receiver reads values in.
        row: the record's values in that order.
        strings: whether ``row`` gives every value as a ``str`` ready to send (packed faster), not values
            of ``types`` still to be converted.
    """

    name: str
    version: str
    definition: str
    types: tuple[str, ...]
    row: Callable[[LogRecord], tuple[Any, ...]]
    strings: bool = False


def text(value: Any) -> str:
    """A string attribute's value as sent: ``"_null"`` for a missing one, else the value as text."""
    return NULL if value is None else str(value)


def _definition(name: str, nick: str, description: str, meta: tuple[tuple[str, str], ...],
                payload: tuple[tuple[str, str], ...]) -> str:
    """The JSON text of a definition, laid out as the Stratos agent wrote it (a receiver parses it)."""
    def attributes(pairs: tuple[tuple[str, str], ...]) -> str:
        return ",".join(f'{{"name":{json.dumps(n)}, "type": "{t}"}}' for n, t in pairs)

    head = (f'{{"name":{json.dumps(name)},"version":"{VERSION}","nickName":{json.dumps(nick)},'
            f'"description":{json.dumps(description)}')
    meta_text = f',"metaData":[{attributes(meta)}]' if meta else ""
    return f'{head}{meta_text},"payloadData":[{attributes(payload)}]}}'


def health_stream(core: StreamDefinition) -> DatabridgeStream:
    """``cartridge_agent_health_stats``: the five ids, the statistic's name and its value (percent)."""
    payload = (*((key, "STRING") for key in _HEALTH_IDS), ("health_description", "STRING"),
               ("value", "DOUBLE"))
    properties = core.properties

    def row(record: LogRecord) -> tuple[Any, ...]:
        fields = record.fields
        ids = tuple(fields.get(key) or properties.get(key) or None for key in _HEALTH_IDS)
        return (*ids, fields.get("name"), fields.get("value"))

    definition = _definition(HEALTH_STREAM, "agent health stats", "agent health stats", (), payload)
    return DatabridgeStream(HEALTH_STREAM, VERSION, definition, tuple(t for _, t in payload), row)


def log_stream_name(properties: Mapping[str, str], day: str) -> str:
    """``logs.<tenant>.<alias>.<day>``: tenant 0 for the super tenant; the alias is the cluster id.

    The Stratos agent meant the alias to be the cluster id's first part, but its split never matched, so
    every stream a monitoring server knows carries the whole cluster id; pca names them the same.
    """
    return f"{LOG_STREAM_PREFIX}.{log_tenant(properties)}.{properties.get('cluster_id', '')}.{day}"


def log_tenant(properties: Mapping[str, str]) -> str:
    """The tenant as log streams name it: ``0`` for the super tenant (-1234, -1), else the tenant id."""
    tenant = properties.get("tenant_id", "")
    return "0" if tenant in SUPER_TENANTS else tenant


def log_day(timestamp: float) -> str:
    """The local date of ``timestamp`` as log stream names carry it: ``yyyy.mm.dd``."""
    return time.strftime("%Y.%m.%d", time.localtime(timestamp))


def log_stream(core: StreamDefinition, day: str) -> DatabridgeStream:
    """The log stream of ``day``: the member id as meta data, then the ten Stratos log attributes.

    ``logTime`` is the day, as in the stream's name (what the Stratos agent sent); ``message`` is the line.
    ``logger`` is the file the line was read from (the Stratos agent sent it empty, with no way to tell
    the files of ``log.file.paths`` apart).
    """
    properties = core.properties
    tenant, alias = log_tenant(properties), properties.get("cluster_id", "")
    name = log_stream_name(properties, day)
    meta = (("memberId", "STRING"),)
    payload = tuple((key, "STRING") for key in _LOG_PAYLOAD)

    default_member = properties.get("member_id") or NULL

    def row(record: LogRecord) -> tuple[str, ...]:  # once per line: kept short
        fields = record.fields
        member = fields.get("member_id") or default_member
        line, path = fields.get("line"), fields.get("path") or ""
        if member.__class__ is not str:
            member = text(member)
        if line.__class__ is not str:
            line = text(line)
        if path.__class__ is not str:
            path = text(path)
        return (member, tenant, alias, "", day, "", line, path, "", member, "")

    definition = _definition(name, "log entries from instance", "Apache Stratos Instance Log Publisher",
                             meta, payload)
    return DatabridgeStream(name, VERSION, definition, ("STRING",) * (len(meta) + len(payload)), row,
                            strings=True)


class Catalog:
    """The databridge stream of each record, from the core streams a publisher was opened with.

    Log streams roll at local midnight: a record goes to the stream of the day of its time stamp. Only the
    streams of the last few days are kept.
    """

    _DAYS_KEPT = 3

    def __init__(self, core_streams: Mapping[str, StreamDefinition]) -> None:
        self._core = dict(core_streams)
        health = self._core.get("health")
        self._health = health_stream(health) if health is not None else None
        self._logs: dict[str, DatabridgeStream] = {}
        self._today: tuple[float, float, DatabridgeStream] | None = None  # the last day's [start, end)

    def stream(self, record: LogRecord) -> DatabridgeStream | None:
        """The stream ``record`` goes to; None for a stream this publisher was not opened with."""
        if record.stream == "health":
            return self._health
        if record.stream != "logs" or "logs" not in self._core:
            return None
        today, timestamp = self._today, record.timestamp
        if today is not None and today[0] <= timestamp < today[1]:
            return today[2]  # most lines fall on the day of the line before
        day = log_day(timestamp)
        stream = self._logs.get(day)
        if stream is None:
            if len(self._logs) >= self._DAYS_KEPT:
                del self._logs[min(self._logs)]
            stream = self._logs[day] = log_stream(self._core["logs"], day)
        self._today = (*_day_bounds(timestamp), stream)
        return stream


def _day_bounds(timestamp: float) -> tuple[float, float]:
    """The local day ``timestamp`` falls in, as [start, end) time stamps (DST days are 23 or 25 hours)."""
    moment = datetime.datetime.fromtimestamp(timestamp)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + datetime.timedelta(days=1)
    return start.timestamp(), end.timestamp()
