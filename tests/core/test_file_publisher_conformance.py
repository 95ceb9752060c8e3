"""The file publisher passes the public log publisher conformance suite; and the suite itself can fail."""

import subprocess
import sys

import pytest

from pca_core.testing import FileReceiver, LogPublisherConformance

pytest_plugins = ["pytester"]


class TestFileConformance(LogPublisherConformance):
    plugin = "file"

    @pytest.fixture
    def receiver(self, tmp_path):
        receiver = FileReceiver(tmp_path)
        yield receiver
        receiver.start()


SUITE = """
import pytest
from pca_core.testing import FileReceiver, LogPublisherConformance
{extra}

class TestFile(LogPublisherConformance):
    plugin = "file"

    @pytest.fixture
    def receiver(self, tmp_path):
        return FileReceiver(tmp_path)
{fixtures}
"""

BROKEN_CLASS = """
    @pytest.fixture
    def publisher_class(self):
        return Broken
"""


def run_suite(pytester, *args, extra="", fixtures=""):
    pytester.makepyfile(SUITE.format(extra=extra, fixtures=fixtures))
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_the_suite_is_marked_and_runs_whole_for_the_file_publisher(pytester):
    result = run_suite(pytester, "-m", "log_publisher_conformance", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 12
    assert "failed" not in outcomes and "errors" not in outcomes and "skipped" not in outcomes
    deselected = pytester.runpytest("-p", "no:cacheprovider", "-m", "not log_publisher_conformance")
    assert deselected.parseoutcomes()["deselected"] == outcomes["passed"]


def test_a_publisher_without_ack_skips_the_ack_test(pytester):
    extra = """
from pca_core.builtin.file import FileLogPublisher

class NoAck(FileLogPublisher):
    capabilities = frozenset()
"""
    result = run_suite(pytester, "-rs", "-k", "test_with_ack", extra=extra,
                       fixtures=BROKEN_CLASS.replace("Broken", "NoAck"))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*does not declare capability 'ack'*"])


@pytest.mark.parametrize(("broken", "failing_test"), [
    ("""
class Broken(FileLogPublisher):   # swallows write errors: claims records the full disk never got
    def publish(self, batch, *, timeout=None):
        try:
            return super().publish(batch, timeout=timeout)
        except LogPublishError:
            return len(batch)
""", "test_publish_while_the_receiver_is_down_fails_within_its_timeout"),
    ("""
class Broken(FileLogPublisher):   # loses what is not ASCII
    def publish(self, batch, *, timeout=None):
        ascii_only = [LogRecord(r.stream, r.timestamp, {k: v.encode("ascii", "replace").decode()
                      if isinstance(v, str) else v for k, v in r.fields.items()}) for r in batch]
        return super().publish(ascii_only, timeout=timeout)
""", "test_open_then_publish_delivers_every_record_in_order_intact"),
    ("""
class Broken(FileLogPublisher):   # keeps only whole seconds
    def publish(self, batch, *, timeout=None):
        return super().publish([LogRecord(r.stream, float(int(r.timestamp)), r.fields) for r in batch],
                               timeout=timeout)
""", "test_records_of_two_streams_arrive_each_on_its_own"),
    ("""
class Broken(FileLogPublisher):   # still writes after close
    def close(self, timeout=None):
        pass
""", "test_publish_after_close_raises_log_publish_error"),
    ("""
class Broken(FileLogPublisher):   # counts a record more than it wrote
    def publish(self, batch, *, timeout=None):
        return super().publish(batch[:-1], timeout=timeout) + 1 if len(batch) > 1 else 1
""", "test_with_ack_accepted_records_are_at_the_receiver_when_publish_returns"),
])
def test_a_publisher_that_breaks_the_contract_fails_the_suite(pytester, broken, failing_test):
    extra = "from pca_core.api import LogPublishError, LogRecord\nfrom pca_core.builtin.file import " \
            "FileLogPublisher\n" + broken
    result = run_suite(pytester, "-k", failing_test, extra=extra, fixtures=BROKEN_CLASS)
    result.assert_outcomes(failed=1)


def test_a_class_without_plugin_fails_with_a_message(pytester):
    pytester.makepyfile("""
        import pytest
        from pca_core.testing import FileReceiver, LogPublisherConformance

        class TestNameless(LogPublisherConformance):
            @pytest.fixture
            def receiver(self, tmp_path):
                return FileReceiver(tmp_path)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "close_is_idempotent")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*set the class attribute plugin*pca.log_publishers*"])


def test_importing_the_pytest_plugin_imports_no_suite_and_no_plugin():
    code = ("import sys, pca_core.testing.plugin; "
            "print(sorted(m for m in sys.modules if m in ('pca_core.builtin.file', "
            "'pca_core.runtime.discovery', 'pca_core.testing.log_publisher', 'pca_core.testing.publishing', "
            "'pca_core.testing.transport', 'stevedore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_file_receiver_is_a_full_disk_while_stopped(tmp_path):
    from pca_core.api import LogPublishError, LogRecord
    from pca_core.builtin.file import FileLogPublisher, FileOptions
    from pca_core.config import PublisherConfig

    receiver = FileReceiver(tmp_path)
    publisher = FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(**receiver.options))
    publisher.publish([LogRecord("logs", 1.0, {"line": "before"})])
    receiver.stop()
    receiver.stop()
    with pytest.raises(LogPublishError, match="No space left on device"):
        publisher.publish([LogRecord("logs", 2.0, {"line": "during"})])
    assert [r.fields["line"] for r in receiver.records()] == ["before"]
    receiver.start()
    receiver.start()
    publisher.publish([LogRecord("logs", 3.0, {"line": "after"})])
    assert [r.fields["line"] for r in receiver.records()] == ["before", "after"]
