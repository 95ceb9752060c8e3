"""The core's stream definitions describe exactly the records the tailer and the health sampler emit."""

import dataclasses
from pathlib import Path

import pytest

from pca_core.agent.health import HealthSampler
from pca_core.api.log_publisher import AttributeType, LogRecord
from pca_core.stratos.payload import identity_from_params
from pca_core.telemetry.streams import core_streams, health_stream, log_fields, logs_stream
from pca_core.telemetry.tailer import LogTailer
from tests.support.configs import PAYLOAD

IDENTITY = identity_from_params({**PAYLOAD, "MEMBER_ID": "m-1", "CLUSTER_INSTANCE_ID": "ci-1",
                                 "NETWORK_PARTITION_ID": "np-1", "PARTITION_ID": "p-1"}, "payload")
PYTHON_TYPES = {AttributeType.STRING: str, AttributeType.DOUBLE: float}


class Collect(list):
    def emit(self, records, *, on_settled=None):
        self.extend(records)
        if on_settled is not None:
            on_settled(True)


def assert_described(records: list[LogRecord], definition) -> None:
    assert records
    names = [attribute.name for attribute in definition.attributes]
    for record in records:
        assert record.stream == definition.name
        assert sorted(record.fields) == sorted(names)  # every field described, every attribute present
        for attribute, value in zip(definition.attributes, definition.values(record), strict=True):
            assert type(value) is PYTHON_TYPES[attribute.type], (attribute, value)


def test_health_records_match_the_health_stream():
    collected = Collect()
    HealthSampler(IDENTITY, collected, memory=lambda: 12.5, load=lambda: 3).tick()
    assert_described(collected, health_stream(IDENTITY))


def test_log_records_match_the_logs_stream(tmp_path: Path):
    log = tmp_path / "app.log"
    log.write_text("")
    collected = Collect()
    tailer = LogTailer([str(log)], collected, fields=log_fields(IDENTITY))
    tailer.poll()
    log.write_text("a line\n")
    tailer.poll()
    tailer.close()
    assert_described(collected, logs_stream(IDENTITY))


@pytest.mark.parametrize("definition", core_streams(IDENTITY), ids=lambda d: d.name)
def test_the_streams_carry_the_member_identity_as_properties(definition):
    assert definition.version and definition.description
    assert dict(definition.properties) == {
        "application_id": "app", "service_name": "php", "cluster_id": "php.domain",
        "cluster_instance_id": "ci-1", "member_id": "m-1", "network_partition_id": "np-1",
        "partition_id": "p-1", "tenant_id": "-1234", "cartridge_alias": ""}
    assert [d.name for d in core_streams(IDENTITY)] == ["logs", "health"]


def test_an_identity_without_optional_ids_gives_empty_strings():
    bare = dataclasses.replace(identity_from_params(PAYLOAD, "payload"), member_id=None)  # built by hand
    assert logs_stream(bare).properties["member_id"] == ""
    assert log_fields(bare) == {"member_id": "", "cluster_id": "php.domain"}
