import dataclasses
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from pca_core.agent.health import HealthSampler, sample_load_percent, sample_memory_percent
from pca_core.builtin.file import FileLogPublisher, FileOptions
from pca_core.config import PublisherConfig
from pca_core.runtime.scheduler import Scheduler
from pca_core.stratos.payload import identity_from_params
from pca_core.telemetry.records import RecordSink
from tests.support.configs import PAYLOAD
from tests.support.waiting import wait_until

IDENTITY = identity_from_params({**PAYLOAD, "MEMBER_ID": "m-1", "CLUSTER_INSTANCE_ID": "ci-1",
                                 "NETWORK_PARTITION_ID": "np-1", "PARTITION_ID": "p-1"}, "payload")
IDENTITY_FIELDS = {"cluster_id": "php.domain", "cluster_instance_id": "ci-1", "network_partition_id": "np-1",
                   "member_id": "m-1", "partition_id": "p-1"}
PROC_MEMINFO = Path("/proc/meminfo")


@pytest.fixture
def to_file(scheduler, tmp_path):
    """A record sink delivering to the ``file`` publisher; yields (sink, read the JSON lines)."""
    path = tmp_path / "health.jsonl"
    publisher = FileLogPublisher(PublisherConfig(plugin="file", streams=("health",), flush_interval=0.01),
                                 FileOptions(path=str(path)))
    sink = RecordSink([publisher], scheduler)

    def read():
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    yield sink, read
    sink.close(5)


def meminfo_percent(text):
    """What psutil.virtual_memory().percent gives, computed from a /proc/meminfo text."""
    values = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()}
    total, available = values["MemTotal"], values["MemAvailable"]
    return round((total - available) / total * 100, 1)


def test_a_tick_emits_memory_and_load_with_the_members_identity_to_the_file(to_file):
    sink, read = to_file
    records = HealthSampler(IDENTITY, sink, clock=lambda: 1234.5).tick()
    sink.flush()
    lines = read()
    assert lines == [{"stream": r.stream, "timestamp": r.timestamp, "fields": dict(r.fields)}
                     for r in records]
    assert [(line["stream"], line["timestamp"], line["fields"]["name"]) for line in lines] == [
        ("health", 1234.5, "memory_consumption"), ("health", 1234.5, "load_average")]
    for line in lines:
        assert set(line["fields"]) == {"name", "value", *IDENTITY_FIELDS}
        assert {key: line["fields"][key] for key in IDENTITY_FIELDS} == IDENTITY_FIELDS
    memory, load = (line["fields"]["value"] for line in lines)
    assert isinstance(memory, float) and 0 <= memory <= 100
    assert isinstance(load, float) and load >= 0


BARE = dataclasses.replace(identity_from_params(PAYLOAD, "payload"), member_id=None)
"""An identity without the optional ids (MEMBER_ID is mandatory in a payload; an identity built by hand may
lack it)."""


def test_identity_values_the_payload_lacks_are_empty_strings():
    sink = RecordSink([], Scheduler(1))
    records = HealthSampler(BARE, sink, memory=lambda: 1.0,
                            load=lambda: 2.0).tick()
    assert [dict(r.fields) for r in records] == [
        {"name": name, "value": value, "cluster_id": "php.domain", "cluster_instance_id": "",
         "network_partition_id": "", "member_id": "", "partition_id": ""}
        for name, value in (("memory_consumption", 1.0), ("load_average", 2.0))]


def test_started_on_the_scheduler_it_samples_periodically_without_a_thread_of_its_own(scheduler, to_file):
    sink, read = to_file
    before = set(threading.enumerate())
    sink.start()
    task = HealthSampler(IDENTITY, sink).start(scheduler, 0.01)
    assert wait_until(lambda: len(read()) >= 6)  # three ticks at least
    assert set(threading.enumerate()) == before
    task.cancel()
    names = [line["fields"]["name"] for line in read()]
    assert names[:6] == ["memory_consumption", "load_average"] * 3


def test_a_failing_sample_is_logged_once_emits_nothing_and_the_task_goes_on(scheduler, to_file, caplog):
    caplog.set_level(logging.INFO, logger="pca_core.agent.health")
    sink, read = to_file
    calls = []

    def memory():
        calls.append(1)
        if len(calls) <= 3:
            raise FileNotFoundError(2, "No such file or directory", "/proc/meminfo")
        return 40.0

    sampler = HealthSampler(IDENTITY, sink, memory=memory, load=lambda: 5.0)
    sink.start()
    task = sampler.start(scheduler, 0.01)
    assert wait_until(lambda: len(read()) >= 2)
    task.cancel()
    assert len(calls) > 3
    assert [(line["fields"]["name"], line["fields"]["value"]) for line in read()][:2] == [
        ("memory_consumption", 40.0), ("load_average", 5.0)]
    failures = [r for r in caplog.records if "cannot be sampled" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "/proc/meminfo" in failures[0].getMessage()
    assert sum("sampled again" in r.getMessage() for r in caplog.records) == 1


def test_a_tick_whose_sample_fails_returns_and_emits_nothing():
    sink = RecordSink([FileLogPublisher(PublisherConfig(plugin="file"), FileOptions(path="/unused"))],
                      Scheduler(1))

    def broken():
        raise ValueError("garbled")

    assert HealthSampler(IDENTITY, sink, load=broken).tick() == []
    assert sink.pending == {"file[0]": 0}


@pytest.mark.skipif(not PROC_MEMINFO.exists(), reason="needs Linux /proc/meminfo")
def test_memory_is_what_psutil_would_compute_from_proc_meminfo(tmp_path):
    text = PROC_MEMINFO.read_text()  # one snapshot, so that both sides see the same values
    snapshot = tmp_path / "meminfo"
    snapshot.write_text(text)
    assert sample_memory_percent(snapshot) == meminfo_percent(text)


@pytest.mark.skipif(not PROC_MEMINFO.exists(), reason="needs Linux /proc/meminfo")
def test_memory_by_default_reads_proc_meminfo():
    # Memory use moves between two readings, but not by a tenth of the machine.
    assert abs(sample_memory_percent() - meminfo_percent(PROC_MEMINFO.read_text())) < 10


def test_memory_arithmetic_and_the_fallback_for_kernels_without_memavailable(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  3000 kB\nMemFree:  100 kB\nMemAvailable:  1001 kB\nCached:  50 kB\n")
    assert sample_memory_percent(meminfo) == 66.6  # 66.633... rounded to one decimal, as psutil does
    meminfo.write_text("MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  7 kB\nCached:  50 kB\n"
                       "SReclaimable:  25 kB\n")
    assert sample_memory_percent(meminfo) == 82.5  # available estimated as free + cached + reclaimable


def test_memory_from_an_unreadable_or_garbled_meminfo_raises(tmp_path):
    with pytest.raises(OSError):
        sample_memory_percent(tmp_path / "missing")
    garbled = tmp_path / "meminfo"
    garbled.write_text("MemFree:  100 kB\n")
    with pytest.raises(ValueError, match="MemTotal"):
        sample_memory_percent(garbled)


def test_load_is_the_one_minute_average_per_cpu_in_percent():
    # The kernel updates the load average every 5 s: the sample equals one of the readings around it.
    before = os.getloadavg()[0]
    sample = sample_load_percent()
    after = os.getloadavg()[0]
    cpus = os.cpu_count()
    assert sample in (pytest.approx(before / cpus * 100), pytest.approx(after / cpus * 100))
    assert sample >= 0
