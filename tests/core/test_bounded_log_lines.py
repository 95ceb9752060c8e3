"""What the models log about an event quotes a bounded excerpt of it, once per message."""

import logging

import pytest

from pca_core.api.transport import Message
from pca_core.stratos import events
from pca_core.stratos.excerpt import excerpt
from pca_core.stratos.state import AgentState

HUGE = "x" * 5_000_000
LIMIT = 1000  # far more than any of these lines needs, far less than the 5 MB field


def test_an_excerpt_is_the_start_and_the_size():
    assert excerpt("short") == "'short'"
    assert excerpt(b"short") == "b'short'"
    cut = excerpt(HUGE)
    assert cut.startswith("'xxx") and cut.endswith("… (5000000 characters)") and len(cut) < 250
    assert excerpt(HUGE.encode()).endswith("… (5000000 bytes)")
    assert len(excerpt(events.TenantCreatedEvent(events.Tenant(tenant_domain=HUGE)))) < 250
    assert excerpt("\n" * 150).startswith("'\\n\\n")  # escaped: no line of a log can be forged


def signups_with_mappings(n_bad_signups: int, n_bad_mappings: int) -> events.Event:
    mappings = [events.DomainMapping(domain_name=HUGE) for _ in range(n_bad_mappings)]
    good = events.ApplicationSignUp(application_id="app", tenant_id=1, domain_mappings=mappings)
    return events.CompleteApplicationSignUpsEvent(
        [good, *(events.ApplicationSignUp(application_id=HUGE) for _ in range(n_bad_signups))])


@pytest.mark.parametrize("event", [
    events.TenantCreatedEvent(events.Tenant(tenant_domain=HUGE)),
    events.TenantUpdatedEvent(tenant_domain=HUGE),
    events.CompleteTenantEvent([events.Tenant(tenant_domain=HUGE)] * 50),
    events.ApplicationSignUpAddedEvent(application_id=HUGE),
    events.ApplicationSignUpRemovedEvent(application_id=HUGE),
    events.DomainMappingAddedEvent(domain_name=HUGE),
    events.DomainMappingRemovedEvent(cluster_id=HUGE),
    events.MemberActivatedEvent(member_id=HUGE, cluster_id="c", service_name="s"),
    signups_with_mappings(50, 50),
    signups_with_mappings(0, 3),
    events.CompleteApplicationSignUpsEvent(),
], ids=lambda event: type(event).__name__)
def test_a_warning_about_an_event_is_one_bounded_line(event, caplog):
    state = AgentState()
    # Incremental events are dropped before their models are initialized: initialize every model first.
    for init in (events.CompleteTenantEvent([]), events.CompleteApplicationSignUpsEvent([]),
                 events.CompleteTopologyEvent(events.Topology(service_map={}))):
        state.handle(Message(init.TOPIC, events.encode(init)))
    with caplog.at_level(logging.DEBUG):
        state.handle(Message(event.TOPIC, events.encode(event)))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage()[:200] for r in warnings]
    assert max(len(r.getMessage()) for r in caplog.records) < LIMIT
