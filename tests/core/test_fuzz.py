"""Fuzzing what the agent does with a message, over every topic it subscribes to.

Bodies nested deeper than any decoder recurses, numbers out of range, invalid UTF-8, wrong types, unknown
event classes and valid events with huge strings go through the agent's own ``on_message`` (the models,
then the lifecycle's decoding of notifier and signup events). Whatever comes: no exception escapes, a
message makes at most one log record at WARNING or above, and no line the CLI writes exceeds 4096 bytes.
"""

from __future__ import annotations

import json
import logging
import threading

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pca_core.agent.lifecycle import Agent
from pca_core.api.topics import topic_matches
from pca_core.api.transport import Message
from pca_core.cli.logsetup import MAX_LINE_BYTES, JsonFormatter, PlainFormatter
from pca_core.config import build
from pca_core.runtime.runtime import Runtime
from pca_core.stratos import events
from pca_core.stratos.topics import AGENT_SUBSCRIPTIONS

TOPICS = sorted(cls.TOPIC for cls in events.EVENT_CLASSES
                if any(topic_matches(pattern, cls.TOPIC) for pattern in AGENT_SUBSCRIPTIONS))
ROOTS = [pattern.removesuffix("#") for pattern in AGENT_SUBSCRIPTIONS]
HUGE = "h" * 300_000

FUZZ = settings(max_examples=400, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def field_names(topic: str) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(events.BY_TOPIC[topic])]


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from([HUGE, 10**4000 // 10**3990, 2**64, -(2**63) - 1]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
raw_numbers = st.sampled_from([b"9" * 5000, b"1e999999", b"-1e400", b"18446744073709551616", b"-0.0e-99999"])


@st.composite
def messages(draw) -> Message:
    kind = draw(st.sampled_from(["deep", "number", "bytes", "shaped", "unknown", "valid"]))
    topic = draw(st.sampled_from(TOPICS))
    if kind == "deep":
        depth = draw(st.sampled_from([1_000, 50_000]))
        opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]")]))
        field = draw(st.sampled_from(field_names(topic) or ["x"])).encode()
        body = b'{"' + field + b'":' + opener * depth + b"1" + closer * depth + b"}"
    elif kind == "number":
        field = draw(st.sampled_from(field_names(topic) or ["x"])).encode()
        body = b'{"' + field + b'":' + draw(raw_numbers) + b"}"
    elif kind == "bytes":
        body = draw(st.binary(max_size=64)) + draw(st.sampled_from([b"", b'{"a":"\xff\xfe"}', b"\xc3\x28"]))
    elif kind == "shaped":  # the event's own keys with values of any type
        keys = field_names(topic) or ["x"]
        body = json.dumps(draw(st.dictionaries(st.sampled_from(keys), json_values, max_size=4))).encode()
    elif kind == "unknown":
        topic = draw(st.sampled_from(ROOTS)) + draw(st.sampled_from(["FutureEvent", "X" * 70_000, "a/b.c"]))
        body = b"{}"
    else:  # a valid event whose every string field is huge
        cls = events.BY_TOPIC[topic]
        strings = {f.name: HUGE for f in msgspec.structs.fields(cls) if f.type in (str | None, "str | None")}
        body = events.encode(cls(**strings))
    return Message(topic, body)


class Records(logging.Handler):
    """Keeps the records of one message."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    tree = {"transport": {"plugin": "memory", "options": {"bus": "fuzz"}},
            "agent": {"state_dir": str(home / "state")},
            "payload": {"APPLICATION_ID": "app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.domain",
                        "MEMBER_ID": "m-1", "CLUSTER_INSTANCE_ID": "ci-1", "PORTS": "8080",
                        "MULTITENANT": "false", "TENANT_ID": "-1234"}}
    runtime = Runtime(build(tree, source="fuzz", environ={}), source="fuzz")
    runtime.load()
    return Agent(runtime, threading.Event())  # not started: on_message only posts what it would do


@pytest.fixture(scope="module")
def records():
    handler = Records()
    logger = logging.getLogger("pca_core")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_every_subscribed_topic_is_fuzzed():
    assert {topic.split("/")[0] for topic in TOPICS} == {"topology", "instance", "tenant", "domain",
                                                         "application"}
    assert "instance/notifier/ArtifactUpdatedEvent" in TOPICS


@FUZZ
@given(message=messages())
def test_no_message_escapes_or_floods_the_log(agent, records, message):
    records.records.clear()
    agent.on_message(message)  # no exception may escape
    warnings = [r for r in records.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage()[:200] for r in warnings]
    assert all(r.exc_info is None for r in warnings)  # no traceback for bad input
    plain, as_json = PlainFormatter(), JsonFormatter()
    for record in records.records:
        if record.levelno >= logging.INFO:  # the library's own bound, before the CLI's cap
            assert len(record.getMessage().encode()) < MAX_LINE_BYTES
        assert len(plain.format(record).encode()) < MAX_LINE_BYTES
        assert len(as_json.format(record).encode()) < MAX_LINE_BYTES
