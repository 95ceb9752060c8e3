"""The event classes against the manifest, and Gson's own samples through decode and encode."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pca_core.stratos import events
from pca_core.stratos.events import manifest
from pca_core.stratos.payload import identity_from_params
from pca_core.stratos.status import REQUEST_EVENTS, STATUS_EVENTS, status_event
from tests.support.configs import PAYLOAD
from tests.support.samples import SAMPLES as SAMPLE_DIR
from tests.support.samples import sample_files

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sample_files()


def topic_of_sample(path: Path) -> str:
    """``topology.CompleteTopologyEvent.2015-03.json`` -> ``topology/CompleteTopologyEvent``."""
    parts = path.name.removesuffix(".json").split(".")
    for end in range(len(parts), 0, -1):
        topic = "/".join(parts[:end])
        if topic in events.BY_TOPIC:
            return topic
    raise AssertionError(f"no event for sample {path.name}")


def test_the_samples_are_the_manifests_event_list():
    events_ = manifest.load_manifest()["events"]
    wanted = {Path(event["sample"]).name for event in events_}
    names = {path.name for path in SAMPLES}
    assert len(wanted) == len(events_), "two manifest events share a sample"
    assert sorted(wanted - names) == [], "manifest events without their Gson sample in tests/data/stratos"
    # Besides one sample per event: variants of an event's sample (``<sample>.<variant>.json``) only.
    extra = names - wanted
    assert all(any(n.startswith(w.removesuffix(".json") + ".") for w in wanted) for n in extra), extra
    assert (SAMPLE_DIR / "README.md").is_file(), "the samples' provenance"


def test_every_class_matches_the_manifest():
    assert manifest.check(manifest.load_manifest()) == []


def test_the_generated_module_is_what_the_manifest_gives():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_events.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def altered(change):
    data = copy.deepcopy(manifest.load_manifest())
    change(data)
    return manifest.check(data)


def event_spec(data, name):
    return next(e for e in data["events"] if e["name"] == name)


def test_the_check_fails_on_a_field_the_class_lacks():
    def add(data):
        event_spec(data, "MemberActivatedEvent")["fields"].append(
            {"json": "zone", "java_type": "String", "json_type": "string", "nullable": True})
    assert altered(add) == ["MemberActivatedEvent.zone: in the manifest, missing from the class"]


def test_the_check_fails_on_a_field_the_manifest_lacks():
    def drop(data):
        fields = event_spec(data, "InstanceActivatedEvent")["fields"]
        fields[:] = [f for f in fields if f["json"] != "instanceId"]
    assert altered(drop) == ["InstanceActivatedEvent.instanceId: in the class, not in the manifest"]


def test_the_check_fails_on_a_retyped_field():
    def retype(data):
        for field in data["types"]["Tenant"]["fields"]:
            if field["json"] == "tenantId":
                field["json_type"] = "string"
    assert altered(retype) == ["Tenant.tenantId: the class has integer, the manifest string"]


def test_the_check_fails_on_a_reordered_class_and_a_missing_class():
    def reorder(data):
        fields = event_spec(data, "InstanceStartedEvent")["fields"]
        fields[0], fields[1] = fields[1], fields[0]
        data["events"].append({"name": "MemberMovedEvent", "topic": "topology/MemberMovedEvent",
                               "fields": []})
    assert altered(reorder) == ["MemberMovedEvent: no class for it",
                                "InstanceStartedEvent: fields are not in the manifest's (Gson's) order"]


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_sample_decodes_and_reencodes_to_the_same_json(path):
    raw = path.read_bytes()
    event = events.decode(topic_of_sample(path), raw)
    assert topic_of_sample(path) == type(event).TOPIC
    assert json.loads(events.encode(event)) == json.loads(raw)


def test_decoding_ignores_unknown_fields_and_treats_every_field_as_optional():
    event = events.decode("topology/MemberActivatedEvent", b'{"memberId":"m1","futureField":{"x":1}}')
    assert event.member_id == "m1"
    assert event.port_map is None and event.cluster_id is None
    assert events.encode(event) == b'{"memberId":"m1"}'


def test_the_dotted_amqp_topic_form_names_the_same_event():
    assert events.event_class("topology.MemberActivatedEvent") is events.MemberActivatedEvent


def test_a_malformed_message_says_where_and_why():
    with pytest.raises(events.EventDecodeError) as info:
        events.decode("topology/MemberActivatedEvent", b'{"portMap":{"80":{"value":"eighty"}}}')
    assert info.value.where == "$.portMap[...].value"
    assert info.value.why == "Expected int | null, got str"
    with pytest.raises(events.EventDecodeError, match="not valid JSON"):
        events.decode("topology/MemberActivatedEvent", b"{")
    with pytest.raises(events.EventDecodeError, match="no Stratos event is named 'Nope'"):
        events.decode("topology/Nope", b"{}")


def identity(**extra):
    return identity_from_params({**PAYLOAD, "MEMBER_ID": "php.member-1", "CLUSTER_INSTANCE_ID": "ci-1",
                                 "NETWORK_PARTITION_ID": "np-1", "PARTITION_ID": "p-1", **extra}, "payload")


def test_status_events_carry_exactly_the_fields_java_declares():
    me = identity(INSTANCE_ID="i-123", GROUP_ID="g-1")
    bodies = {cls.__name__: json.loads(events.encode(status_event(cls, me))) for cls in STATUS_EVENTS}
    common = {"serviceName": "php", "clusterId": "php.domain", "memberId": "php.member-1",
              "clusterInstanceId": "ci-1", "networkPartitionId": "np-1", "partitionId": "p-1",
              "groupId": "g-1"}
    assert bodies["InstanceStartedEvent"] == {"applicationId": "app", **common}
    assert bodies["InstanceActivatedEvent"] == {**common, "instanceId": "i-123"}
    assert bodies["InstanceMaintenanceModeEvent"] == common
    assert bodies["InstanceReadyToShutdownEvent"] == common
    order = list(bodies["InstanceActivatedEvent"])
    assert order[:4] == ["serviceName", "clusterId", "memberId", "instanceId"]


def test_group_id_falls_back_to_group_name():
    event = status_event(events.InstanceStartedEvent, identity(GROUP_NAME="tomcat-group"))
    assert event.group_id == "tomcat-group"


def test_request_events_are_empty_objects_on_initializer_topics():
    for cls in REQUEST_EVENTS:
        assert cls.TOPIC.startswith("initializer/")
        assert events.encode(cls()) == b"{}"


def test_tenant_ids_have_the_java_types():
    artifact = events.decode("instance/notifier/ArtifactUpdatedEvent", b'{"tenantId":"-1234"}')
    assert artifact.tenant_id == "-1234"
    removed = events.decode("tenant/TenantRemovedEvent", b'{"tenantId":7}')
    assert removed.tenant_id == 7
    with pytest.raises(events.EventDecodeError):
        events.decode("domain/mapping/DomainMappingAddedEvent", b'{"tenantId":"7"}')


def test_pca_events_check_accepts_every_sample():
    code = "\n".join([
        "import sys",
        "from pca_core.cli.main import main",
        "failed = [a for a in sys.argv[1:] if main(['events', 'check', *a.split('=', 1)]) != 0]",
        "print('FAILED', failed)",
    ])
    args = [f"{topic_of_sample(p)}={p}" for p in SAMPLES]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "FAILED []"
    assert result.stdout.count('"repoPassword": "***"') >= 1


def test_pca_events_check_on_a_misfit_says_where_and_exits_1(tmp_path):
    body = tmp_path / "msg.json"
    body.write_text('{"memberId": 5}')
    result = subprocess.run([sys.executable, "-m", "pca_core", "events", "check",
                             "topology/MemberActivatedEvent", str(body)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"pca: {body} does not fit topology/MemberActivatedEvent at $.memberId: "
                                     "Expected str | null, got int")
