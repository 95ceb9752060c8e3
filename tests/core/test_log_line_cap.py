"""The CLI's log handler writes no line longer than MAX_LINE_BYTES, whatever is logged."""

import json
import logging
import sys

import pytest

from pca_core.cli import logsetup

HUGE = "é" * 3_000_000  # two bytes each in UTF-8


@pytest.fixture
def root_restored():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def failing_record(message: str) -> logging.LogRecord:
    try:
        raise ValueError(HUGE)
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord("plugin.x", logging.ERROR, __file__, 1, "%s", (message,), exc_info)


@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_no_written_line_exceeds_the_cap_tracebacks_included(fmt, tmp_path, root_restored):
    log = tmp_path / "agent.log"
    logsetup.configure("DEBUG", fmt, str(log))
    plugin = logging.getLogger("plugin.x")
    plugin.warning("a big one: %s", HUGE)
    plugin.handle(failing_record("with a huge traceback"))
    plugin.info("small: http://user:secret@host/ " + "a" * 5000)
    plugin.info("fine")
    data = log.read_bytes()
    records = data.decode().splitlines() if fmt == "json" else data.split(b"\n")
    assert max(len(line.encode() if isinstance(line, str) else line) for line in records) <= 4096
    if fmt == "json":
        entries = [json.loads(line) for line in records]
        assert [e["message"][:9] for e in entries] == ["a big one", "with a hu", "small: ht", "fine"]
        assert "truncated" in entries[0]["message"] and "truncated" in entries[1]["exception"]
    else:
        assert data.count(b"truncated") == 3
        assert b"fine\n" in data
    assert b"secret" not in data


def test_a_record_within_the_cap_is_unchanged():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    assert logsetup.PlainFormatter().format(record).endswith("INFO x: hello world")
    assert json.loads(logsetup.JsonFormatter().format(record))["message"] == "hello world"


def test_the_cap_counts_bytes_and_never_splits_a_character():
    line = logsetup.cap_line("é" * 5000, 4096)
    assert len(line.encode()) <= 4095  # room for the newline the handler adds
    assert line.startswith("é" * 1000) and "truncated" in line
