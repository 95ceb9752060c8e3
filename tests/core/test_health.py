import os

from pca_core.health import HealthSampler, sample_load_percent, sample_memory_percent
from pca_core.payload import identity_from_params
from tests.support.configs import PAYLOAD


class Collect:
    def __init__(self):
        self.records = []

    def emit(self, records):
        self.records.extend(records)


IDENTITY = identity_from_params({**PAYLOAD, "MEMBER_ID": "m-1", "CLUSTER_INSTANCE_ID": "ci-1",
                                 "NETWORK_PARTITION_ID": "np-1", "PARTITION_ID": "p-1"}, "payload")


def test_a_tick_emits_memory_and_load_with_the_members_identity():
    sink = Collect()
    records = HealthSampler(IDENTITY, sink, clock=lambda: 1234.5).tick()
    assert sink.records == records
    assert [(r.stream, r.timestamp, r.fields["name"]) for r in records] == [
        ("health", 1234.5, "memory_consumption"), ("health", 1234.5, "load_average")]
    for r in records:
        assert {k: r.fields[k] for k in ("cluster_id", "cluster_instance_id", "network_partition_id",
                                         "member_id", "partition_id")} == {
            "cluster_id": "php.domain", "cluster_instance_id": "ci-1", "network_partition_id": "np-1",
            "member_id": "m-1", "partition_id": "p-1"}
    memory, load = (r.fields["value"] for r in records)
    assert 0 < memory <= 100
    assert load >= 0


def test_memory_is_what_proc_meminfo_says(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  250 kB\n")
    assert sample_memory_percent(meminfo) == 75.0


def test_load_is_the_one_minute_average_per_cpu_in_percent():
    expected = os.getloadavg()[0] / os.cpu_count() * 100
    assert abs(sample_load_percent() - expected) < 50  # the load moves between the two readings


def test_a_failing_sample_is_logged_once_and_emits_nothing(caplog):
    sink = Collect()

    def broken():
        raise OSError("no /proc here")

    sampler = HealthSampler(IDENTITY, sink, memory=broken)
    assert sampler.tick() == [] and sampler.tick() == []
    assert sink.records == []
    assert caplog.text.count("cannot be sampled") == 1
