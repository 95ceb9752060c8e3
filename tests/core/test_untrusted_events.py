"""Untrusted message bodies and topics: every failure to decode is an EventDecodeError, logged once."""

import logging

import pytest

from pca_core.api.transport import Message
from pca_core.stratos import events
from pca_core.stratos.state import AgentState

DEEP = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.mark.parametrize(("body", "why"), [
    (DEEP, "nested too deeply"),
    (b'{"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
    (b'{"tenant":{"tenantId":' + b"9" * 5000 + b"}}", "out of range"),
    (b'{"tenant":{"tenantId":1e999999}}', "out of range"),
    (b'{"tenant":{"tenantDomain":"\xff\xfe"}}', "UTF-8"),
    ('{"tenant":{"tenantDomain":"\udc80"}}', "UTF-8"),
])
def test_whatever_msgspec_raises_on_a_body_becomes_an_event_decode_error(body, why):
    with pytest.raises(events.EventDecodeError, match=why) as info:
        events.decode("tenant/TenantCreatedEvent", body)
    assert info.value.topic == "tenant/TenantCreatedEvent"


def test_a_deeply_nested_body_is_one_warning_with_its_topic_and_no_traceback(caplog):
    state = AgentState()
    with caplog.at_level(logging.DEBUG):
        assert state.handle(Message("topology/CompleteTopologyEvent", DEEP)) is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "topology/CompleteTopologyEvent" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert not state.topology.initialized


def test_an_unknown_event_class_is_reported_as_unknown_once_per_name_at_info(caplog):
    state = AgentState()
    with caplog.at_level(logging.DEBUG, logger="pca_core.stratos"):
        for _ in range(3):
            assert state.handle(Message("topology/FutureEvent", b"{}")) is False
        assert state.handle(Message("tenant/OtherFutureEvent", b"{}")) is False
    reported = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelno for r in reported] == [logging.INFO, logging.INFO]
    assert "unknown event class" in reported[0].getMessage()
    assert "topology/FutureEvent: no Stratos event is named 'FutureEvent'" in reported[0].getMessage()
    assert "malformed" not in caplog.text
    assert "OtherFutureEvent" in reported[1].getMessage()


def test_the_memory_of_unknown_names_is_bounded(caplog):
    state = AgentState()
    with caplog.at_level(logging.INFO, logger="pca_core.stratos"):
        for i in range(5 * AgentState.UNKNOWN_NAMES_REMEMBERED):
            state.handle(Message(f"topology/Future{i}Event", b"{}"))
    assert len(state._unknown) <= AgentState.UNKNOWN_NAMES_REMEMBERED
    assert "Future0Event" in caplog.text


def test_a_huge_topic_is_cut_in_the_error_and_the_log(caplog):
    name = "X" * 60_000
    with pytest.raises(events.UnknownEventError) as info:
        events.event_class(f"topology/{name}")
    assert len(str(info.value)) < 1000
    with caplog.at_level(logging.INFO, logger="pca_core.stratos"):
        AgentState().handle(Message(f"topology/{name}", b"{}"))
    assert 0 < max(len(r.getMessage()) for r in caplog.records) < 1000
