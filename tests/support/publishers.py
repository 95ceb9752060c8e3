"""A fake log publisher and record helpers for the record sink's tests."""

from __future__ import annotations

import json
import logging

from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogPublisher, LogRecord
from pca_core.builtin.file import FileLogPublisher, FileOptions
from pca_core.config import PublisherConfig


class Sink(LogPublisher):
    """A log publisher that keeps what it accepted and can be told to fail (a fake sink)."""

    def __init__(self, streams=("logs", "health"), plugin="fake", **batching):
        super().__init__(PublisherConfig(plugin=plugin, streams=tuple(streams), **batching), None)
        self.accepted: list[LogRecord] = []
        self.batches: list[int] = []
        self.opens: list[list[str]] = []  # the stream names of each open() call
        self.attempts = 0
        self.down = False
        self.takes: int | None = None  # accept at most this many records of each batch
        self.during_publish = None  # called inside publish, before it succeeds or fails
        self.flushed = self.closed = False

    def open(self, streams, *, timeout=None):
        super().open(streams, timeout=timeout)
        self.opens.append([stream.name for stream in streams])

    def publish(self, batch, *, timeout=None):
        self.attempts += 1
        if self.during_publish is not None:
            self.during_publish()
        if self.down:
            raise LogPublishError("fake", "sink is down")
        taken = list(batch) if self.takes is None else list(batch)[:self.takes]
        self.batches.append(len(batch))
        self.accepted.extend(taken)
        return len(taken)

    def flush(self, timeout=None):
        self.flushed = True

    def close(self, timeout=None):
        self.closed = True


def record(stream, n):
    return LogRecord(stream, float(n), {"n": n})


def numbers(records):
    return [r.fields["n"] for r in records]


def file_publisher(path, streams=("logs", "health"), **batching):
    return FileLogPublisher(PublisherConfig(plugin="file", streams=tuple(streams), **batching),
                            FileOptions(path=str(path)))


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def warnings(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]
