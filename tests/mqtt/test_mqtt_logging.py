"""What the mqtt transport, and the runtime above it, log about connections: once each, no credentials."""

from __future__ import annotations

import json
import logging
import threading

from pca_core.api import ConnectionState as S
from pca_core.config import build
from pca_core.runtime.runtime import Runtime
from pca_core.testing import Inbox, StateLog, wait_until
from tests.support.configs import PAYLOAD

USER, PASSWORD = "agent-user", "Sup3r-s3cret-pw"


def _with_credentials(url: str) -> str:
    return url.replace("mqtt://", f"mqtt://{USER}:{PASSWORD}@")  # the test broker lets anyone in


def _messages(caplog, text: str, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage() and r.levelno >= level]


def test_a_lost_connection_is_logged_once_at_warning_without_credentials(broker, caplog):
    caplog.set_level(logging.DEBUG)
    tree = {"transport": {"plugin": "mqtt", "urls": [_with_credentials(broker.url)], "reconnect_delay": 0.05,
                          "max_reconnect_delay": 0.2},
            "payload": dict(PAYLOAD)}
    runtime = Runtime(build(json.loads(json.dumps(tree)), source="test", environ={}), source="test")
    runtime.load()
    try:
        assert runtime.start(threading.Event(), patterns=("pca/test/#",))
        broker.stop()
        assert wait_until(lambda: _messages(caplog, "lost", logging.WARNING), timeout=10)
        broker.start()
        assert wait_until(lambda: _messages(caplog, "transport reconnected"), timeout=10)
    finally:
        runtime.stop(5)
    (lost,) = _messages(caplog, "lost", logging.WARNING)  # the runtime's; the transport's is at DEBUG
    assert [r.name for r in caplog.records if r.getMessage() == lost] == ["pca_core.runtime.runtime"]
    assert f"{broker.url} " in lost and "reconnecting in" in lost
    assert USER not in caplog.text and PASSWORD not in caplog.text


def test_failover_and_restored_subscriptions_are_logged_without_credentials(broker, make_mqtt, caplog):
    caplog.set_level(logging.INFO, logger="pca_mqtt")
    dead, live = _with_credentials(broker.dead_url), _with_credentials(broker.url)
    transport = make_mqtt(dead, live, client_id="pca-log-test")
    states = StateLog()
    transport.add_state_listener(states)
    inbox = Inbox()
    transport.subscribe("pca/a/#", inbox)
    transport.subscribe("pca/b/#", inbox)
    transport.connect(timeout=10)
    assert _messages(caplog, "skipped") == [
        f"mqtt: skipped {broker.dead_url} (connection refused); trying {broker.url}"]
    assert _messages(caplog, "connected to") == [
        f"mqtt: connected to {broker.url} as 'pca-log-test'; subscribed to 2 patterns"]

    broker.restart()
    assert states.wait_for_sequence(S.CONNECTED, S.LOST, S.RECONNECTED, timeout=10)
    assert _messages(caplog, "reconnected to")[-1] == (
        f"mqtt: reconnected to {broker.url} as 'pca-log-test'; 2 subscriptions restored")
    assert USER not in caplog.text and PASSWORD not in caplog.text
