import json
import subprocess
import sys

import pytest

from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogRecord
from pca_core.builtin.file import FileLogPublisher, FileOptions
from pca_core.config import PublisherConfig


def test_records_are_appended_as_json_lines(tmp_path):
    path = tmp_path / "out" / "records.jsonl"
    publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path=str(path), fsync=True))
    publisher.publish([LogRecord("logs", 1.5, {"line": "hello", "path": "/var/log/a"})])
    publisher.publish([LogRecord("health", 2.0, {"name": "load_average", "value": 0.25}),
                       LogRecord("health", 2.0, {"name": "memory_consumption", "value": 41.0})])
    publisher.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"stream": "logs", "timestamp": 1.5, "fields": {"line": "hello", "path": "/var/log/a"}},
        {"stream": "health", "timestamp": 2.0, "fields": {"name": "load_average", "value": 0.25}},
        {"stream": "health", "timestamp": 2.0, "fields": {"name": "memory_consumption", "value": 41.0}},
    ]


def test_a_file_moved_away_by_a_rotator_is_recreated(tmp_path):
    path = tmp_path / "records.jsonl"
    publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path=str(path)))
    publisher.publish([LogRecord("logs", 1.0, {"line": "a"})])
    path.rename(tmp_path / "records.jsonl.1")
    publisher.publish([LogRecord("logs", 2.0, {"line": "b"})])
    assert json.loads(path.read_text())["fields"] == {"line": "b"}


def test_a_write_failure_raises_so_the_core_can_retry(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    publisher = FileLogPublisher(PublisherConfig(plugin="file"),
                                 FileOptions(path=str(blocker / "records.jsonl")))
    with pytest.raises(LogPublishError) as info:
        publisher.publish([LogRecord("logs", 1.0, {"line": "a"})])
    assert info.value.plugin == "file"
    assert "cannot write" in str(info.value)


def test_publish_after_close_raises_and_close_is_idempotent(tmp_path):
    publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path=str(tmp_path / "r")))
    publisher.close()
    publisher.close()
    with pytest.raises(LogPublishError, match="after close"):
        publisher.publish([LogRecord("logs", 1.0, {"line": "late"})])
    assert not (tmp_path / "r").exists()


PARTIAL_WRITE = """
import resource, signal, sys
from pca_core.api.errors import LogPublishError
from pca_core.api.log_publisher import LogRecord
from pca_core.builtin.file import FileLogPublisher, FileOptions
from pca_core.config import PublisherConfig

path = sys.argv[1]
publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path=path))
publisher.publish([LogRecord("logs", 1.0, {"line": "fits"})])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
try:
    publisher.publish([LogRecord("logs", 2.0, {"line": "x" * 100}), LogRecord("logs", 3.0, {"line": "y"})])
except LogPublishError as exc:
    print(exc)
"""


def test_a_batch_that_fits_only_in_part_leaves_nothing_of_it_behind(tmp_path):
    # The file may hold 200 bytes: the batch's first record is written, the write of the rest fails.
    path = tmp_path / "records.jsonl"
    result = subprocess.run([sys.executable, "-c", PARTIAL_WRITE, str(path)], capture_output=True,
                            text=True, check=True)
    assert "cannot write" in result.stdout and "too large" in result.stdout
    assert [json.loads(line)["fields"]["line"] for line in path.read_text().splitlines()] == ["fits"]
