import pytest

from pca_core.api.topics import topic_matches, validate_pattern, validate_topic
from pca_core.stratos.topics import AGENT_SUBSCRIPTIONS


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("topology/#", "topology/MemberActivatedEvent", True),
    ("topology/#", "topology", True),
    ("topology/#", "topologyX/MemberActivatedEvent", False),
    ("#", "anything/at/all", True),
    ("instance/+/InstanceStartedEvent", "instance/status/InstanceStartedEvent", True),
    ("instance/+/InstanceStartedEvent", "instance/status/x/InstanceStartedEvent", False),
    ("instance/+", "instance", False),
    ("instance/+", "instance/", True),
    ("+/+", "a/b", True),
    ("a/b", "a/b", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
])
def test_mqtt_matching(pattern, topic, expected):
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["", "a/#/b", "a/b#", "a+/b", "a/+b"])
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        validate_pattern(pattern)


@pytest.mark.parametrize("topic", ["", "a/+", "a/#"])
def test_wildcards_cannot_be_published_to(topic):
    with pytest.raises(ValueError, match="topic"):
        validate_topic(topic)


def test_agent_listens_to_notifier_events_but_not_to_instance_status():
    assert any(topic_matches(p, "instance/notifier/ArtifactUpdatedEvent") for p in AGENT_SUBSCRIPTIONS)
    assert not any(topic_matches(p, "instance/status/InstanceStartedEvent") for p in AGENT_SUBSCRIPTIONS)
    assert any(topic_matches(p, "domain/mapping/DomainMappingAddedEvent") for p in AGENT_SUBSCRIPTIONS)
