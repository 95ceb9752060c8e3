"""The tenant model: Gson's samples, each event's effect, reconciliation of complete events, observers."""


import pytest

from pca_core.stratos import events
from pca_core.stratos.tenants import (
    SUPER_TENANT_DOMAIN,
    SUPER_TENANT_ID,
    Tenant,
    TenantAdded,
    TenantModel,
    TenantRemoved,
    TenantUpdated,
)
from tests.support.samples import SAMPLES

COMPLETE = events.CompleteTenantEvent.TOPIC


def sample(name: str) -> bytes:
    return (SAMPLES / f"tenant.{name}.json").read_bytes()


def send(model: TenantModel, event: events.Event):
    return model.handle(event.TOPIC, events.encode(event))


def complete(*tenants: tuple[int, str]) -> bytes:
    return events.encode(events.CompleteTenantEvent(
        tenants=[events.Tenant(tenant_id=i, tenant_domain=d) for i, d in tenants]))


def created(tenant_id: int, domain: str) -> events.TenantCreatedEvent:
    return events.TenantCreatedEvent(tenant=events.Tenant(tenant_id=tenant_id, tenant_domain=domain))


def contents(model: TenantModel) -> dict[int, str]:
    return {i: t.domain for i, t in model.tenants.items()}


@pytest.fixture
def model() -> TenantModel:
    """A model loaded from Gson's CompleteTenantEvent: -1234 carbon.super, 1 acme, 2 globex."""
    m = TenantModel()
    m.handle(COMPLETE, sample("CompleteTenantEvent"))
    return m


# -- the complete event ----------------------------------------------------------------------------


def test_a_new_model_holds_only_the_super_tenant_and_is_not_initialized():
    m = TenantModel()
    assert not m.initialized
    assert contents(m) == {SUPER_TENANT_ID: SUPER_TENANT_DOMAIN}
    assert m.tenant_by_domain("carbon.super") == Tenant(-1234, "carbon.super")


def test_the_complete_sample_loads_every_tenant():
    m = TenantModel()
    changes = m.handle(COMPLETE, sample("CompleteTenantEvent"))
    # The super tenant was there already, so only the other two are new.
    assert changes == [TenantAdded(1, "acme.example.com"), TenantAdded(2, "globex.example.org")]
    assert m.initialized
    assert contents(m) == {-1234: "carbon.super", 1: "acme.example.com", 2: "globex.example.org"}
    assert m.tenant(2) == Tenant(2, "globex.example.org")
    assert m.tenant_by_domain("acme.example.com") == Tenant(1, "acme.example.com")
    assert m.tenant(3) is None
    assert m.tenant_by_domain("initech.example.net") is None


def test_an_identical_complete_event_is_skipped_without_decoding(model, monkeypatch):
    decoded = []
    real_decode = events.decode
    monkeypatch.setattr(events, "decode", lambda *a: decoded.append(a) or real_decode(*a))
    seen = []
    model.observe(seen.append)
    assert model.handle(COMPLETE, sample("CompleteTenantEvent")) == []
    assert model.handle(COMPLETE, sample("CompleteTenantEvent").decode()) == []  # a str body is the same
    assert decoded == []
    assert seen == []
    # Another body is decoded.
    model.handle(COMPLETE, complete((1, "acme.example.com")))
    assert len(decoded) == 1


def test_after_an_incremental_change_the_same_snapshot_is_reconciled_again(model):
    # The model no longer is that snapshot, so skipping it would not be the same as reconciling it.
    send(model, events.TenantRemovedEvent(tenant_id=2))
    assert model.handle(COMPLETE, sample("CompleteTenantEvent")) == [TenantAdded(2, "globex.example.org")]
    assert model.tenant(2) == Tenant(2, "globex.example.org")


def test_an_incremental_event_that_changes_nothing_keeps_the_snapshot_skippable(model, monkeypatch):
    send(model, events.TenantRemovedEvent(tenant_id=99))
    send(model, created(1, "acme.example.com"))
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert model.handle(COMPLETE, sample("CompleteTenantEvent")) == []


def test_a_complete_event_applied_directly_forgets_the_last_payload(model):
    model.apply(events.decode(COMPLETE, complete((1, "acme.example.com"))))
    assert model.tenant(2) is None
    # The first payload again is not the last one applied any more: it is reconciled.
    assert model.handle(COMPLETE, sample("CompleteTenantEvent")) == [TenantAdded(2, "globex.example.org")]


def test_a_complete_event_without_a_list_changes_nothing_and_initializes_nothing(model, monkeypatch):
    m = TenantModel()
    assert m.handle(COMPLETE, b'{"tenants":null}') == []
    assert not m.initialized
    # The loaded model still reflects the sample, so the sample is still skipped.
    assert model.handle(COMPLETE, b'{"tenants":null}') == []
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert model.handle(COMPLETE, sample("CompleteTenantEvent")) == []


def test_a_differing_complete_event_makes_the_same_changes_as_the_incremental_events(model):
    incremental = TenantModel()
    incremental.handle(COMPLETE, sample("CompleteTenantEvent"))

    new = complete((-1234, "carbon.super"), (1, "acme-corp.example.com"), (3, "initech.example.net"))
    reconciled = model.handle(COMPLETE, new)

    by_events = [
        *send(incremental, events.TenantRemovedEvent(tenant_id=2)),
        *send(incremental, events.TenantUpdatedEvent(tenant_id=1, tenant_domain="acme-corp.example.com")),
        *send(incremental, created(3, "initech.example.net")),
    ]
    assert reconciled == by_events == [
        TenantRemoved(2, "globex.example.org"),
        TenantUpdated(1, "acme.example.com", "acme-corp.example.com"),
        TenantAdded(3, "initech.example.net"),
    ]
    assert contents(model) == contents(incremental)
    assert model.tenant_by_domain("acme-corp.example.com") == Tenant(1, "acme-corp.example.com")
    assert model.tenant_by_domain("acme.example.com") is None
    assert model.tenant_by_domain("globex.example.org") is None


def test_a_complete_event_without_the_super_tenant_keeps_it(model):
    changes = model.handle(COMPLETE, complete((1, "acme.example.com")))
    assert changes == [TenantRemoved(2, "globex.example.org")]
    assert model.tenant(SUPER_TENANT_ID) == Tenant(SUPER_TENANT_ID, SUPER_TENANT_DOMAIN)


def test_a_complete_event_can_swap_two_domains(model):
    changes = model.handle(COMPLETE, complete((1, "globex.example.org"), (2, "acme.example.com")))
    assert changes == [TenantUpdated(1, "acme.example.com", "globex.example.org"),
                       TenantUpdated(2, "globex.example.org", "acme.example.com")]
    assert model.tenant_by_domain("acme.example.com") == Tenant(2, "acme.example.com")
    assert model.tenant_by_domain("globex.example.org") == Tenant(1, "globex.example.org")


def test_a_complete_event_without_a_tenant_list_changes_nothing():
    m = TenantModel()
    assert m.handle(COMPLETE, b"{}") == []
    assert not m.initialized
    # It was not taken as the last snapshot either: a real one after it still applies.
    assert m.handle(COMPLETE, sample("CompleteTenantEvent")) != []


def test_incomplete_tenant_records_in_a_complete_event_are_skipped():
    m = TenantModel()
    body = (b'{"tenants":[{"tenantId":5},{"tenantDomain":"nobody.example"},'
            b'{"tenantId":6,"tenantDomain":"six"}]}')
    assert m.handle(COMPLETE, body) == [TenantAdded(6, "six")]
    assert m.tenant(5) is None


# -- incremental events ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    created(3, "initech.example.net"),
    events.TenantUpdatedEvent(tenant_id=SUPER_TENANT_ID, tenant_domain="renamed"),
    events.TenantRemovedEvent(tenant_id=SUPER_TENANT_ID),
], ids=lambda e: type(e).__name__)
def test_incremental_events_before_the_first_complete_event_are_dropped(event):
    m = TenantModel()
    assert send(m, event) == []
    assert contents(m) == {SUPER_TENANT_ID: SUPER_TENANT_DOMAIN}


def test_the_gate_comes_before_decoding_and_holds_for_decoded_events_too(monkeypatch):
    m = TenantModel()
    event = created(3, "initech.example.net")
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert m.handle(event.TOPIC, b"not even JSON") == []  # as in Java, the gate comes before parsing
    assert m.apply(event) == []
    assert contents(m) == {SUPER_TENANT_ID: SUPER_TENANT_DOMAIN}


def test_the_created_sample_adds_a_tenant(model):
    changes = model.handle(events.TenantCreatedEvent.TOPIC, sample("TenantCreatedEvent"))
    assert changes == [TenantAdded(3, "initech.example.net")]
    assert model.tenant_by_domain("initech.example.net") == Tenant(3, "initech.example.net")
    assert model.handle(events.TenantCreatedEvent.TOPIC, sample("TenantCreatedEvent")) == []


def test_created_for_a_known_id_with_another_domain_is_an_update_and_leaves_no_stale_domain(model):
    assert send(model, created(1, "acme.example.net")) == [
        TenantUpdated(1, "acme.example.com", "acme.example.net")]
    assert model.tenant_by_domain("acme.example.com") is None
    assert model.tenant_by_domain("acme.example.net") == Tenant(1, "acme.example.net")


def test_the_updated_sample_moves_the_tenant_to_its_new_domain(model):
    model.handle(events.TenantCreatedEvent.TOPIC, sample("TenantCreatedEvent"))
    changes = model.handle(events.TenantUpdatedEvent.TOPIC, sample("TenantUpdatedEvent"))
    assert changes == [TenantUpdated(3, "initech.example.net", "initech-corp.example.net")]
    assert model.tenant(3) == Tenant(3, "initech-corp.example.net")
    assert model.tenant_by_domain("initech-corp.example.net") == Tenant(3, "initech-corp.example.net")
    assert model.tenant_by_domain("initech.example.net") is None


def test_an_update_to_the_same_domain_changes_nothing(model):
    assert send(model, events.TenantUpdatedEvent(tenant_id=1, tenant_domain="acme.example.com")) == []


def test_the_removed_sample_removes_the_tenant_and_its_domain(model):
    model.handle(events.TenantCreatedEvent.TOPIC, sample("TenantCreatedEvent"))
    model.handle(events.TenantUpdatedEvent.TOPIC, sample("TenantUpdatedEvent"))
    changes = model.handle(events.TenantRemovedEvent.TOPIC, sample("TenantRemovedEvent"))
    assert changes == [TenantRemoved(3, "initech-corp.example.net")]
    assert model.tenant(3) is None
    assert model.tenant_by_domain("initech-corp.example.net") is None


@pytest.mark.parametrize("event", [
    events.TenantUpdatedEvent(tenant_id=99, tenant_domain="nowhere.example"),
    events.TenantRemovedEvent(tenant_id=99),
    events.TenantRemovedEvent(),
    events.TenantUpdatedEvent(tenant_id=1),  # no domain to move to
    events.TenantCreatedEvent(),
    events.TenantCreatedEvent(tenant=events.Tenant(tenant_id=7)),
], ids=repr)
def test_events_for_unknown_or_unnamed_tenants_are_no_ops(model, event):
    before = contents(model)
    seen = []
    model.observe(seen.append)
    assert send(model, event) == []
    assert contents(model) == before
    assert seen == []


def test_a_removed_tenants_domain_stays_with_another_tenant_that_took_it(model):
    # Domains are unique in Stratos; if one is reused anyway, removing the old holder keeps the new one's.
    send(model, created(3, "acme.example.com"))
    send(model, events.TenantRemovedEvent(tenant_id=1))
    assert model.tenant_by_domain("acme.example.com") == Tenant(3, "acme.example.com")


def test_events_of_other_trees_are_ignored(model):
    before = contents(model)
    body = (SAMPLES / "topology.MemberCreatedEvent.json").read_bytes()
    assert model.handle("topology/MemberCreatedEvent", body) == []
    assert model.apply(events.ApplicationSignUpRemovedEvent(application_id="a", tenant_id=1)) == []
    assert contents(model) == before


# -- malformed messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "body"), [
    (COMPLETE, b'{"tenants":[{"tenantId":1,'),
    (COMPLETE, b'{"tenants":"all of them"}'),
    (events.TenantCreatedEvent.TOPIC, b'{"tenant":{"tenantId":"three"}}'),
    (events.TenantRemovedEvent.TOPIC, b"[]"),
    ("tenant/TenantSubscribedEvent", b"{}"),
])
def test_a_malformed_message_raises_and_leaves_the_model_unchanged(model, topic, body):
    before = contents(model)
    with pytest.raises(events.EventDecodeError):
        model.handle(topic, body)
    assert contents(model) == before
    assert model.initialized


def test_a_malformed_complete_event_does_not_spoil_the_next_one():
    m = TenantModel()
    with pytest.raises(events.EventDecodeError):
        m.handle(COMPLETE, b'{"tenants":[')
    assert not m.initialized
    assert m.handle(COMPLETE, sample("CompleteTenantEvent")) != []
    assert m.initialized


# -- observers and readers -------------------------------------------------------------------------


def test_observers_receive_the_changes_in_order_until_stopped(model):
    seen = []
    stop = model.observe(seen.append)
    changes = send(model, created(3, "initech.example.net"))
    changes += send(model, events.TenantRemovedEvent(tenant_id=3))
    assert seen == changes == [TenantAdded(3, "initech.example.net"), TenantRemoved(3, "initech.example.net")]
    stop()
    send(model, created(4, "four.example"))
    assert len(seen) == 2


def test_a_failing_observer_does_not_break_the_model_or_the_other_observers(model):
    def fail(change):
        raise RuntimeError("observer bug")

    seen = []
    model.observe(fail)
    model.observe(seen.append)
    assert send(model, created(3, "initech.example.net")) == [TenantAdded(3, "initech.example.net")]
    assert seen == [TenantAdded(3, "initech.example.net")]
    assert model.tenant(3) == Tenant(3, "initech.example.net")
    assert send(model, events.TenantRemovedEvent(tenant_id=3)) == [TenantRemoved(3, "initech.example.net")]


def test_the_lock_is_held_by_updates_and_reentrant(model):
    with model.lock:  # a reader holding it may call the lookups, which take it too
        assert model.tenant(1) == Tenant(1, "acme.example.com")
        assert send(model, events.TenantRemovedEvent(tenant_id=1)) == [TenantRemoved(1, "acme.example.com")]


def test_observers_see_the_model_already_updated(model):
    looked_up = []
    model.observe(lambda change: looked_up.append(model.tenant(change.tenant_id)))
    send(model, created(3, "initech.example.net"))
    assert looked_up == [Tenant(3, "initech.example.net")]


def test_the_tenants_view_is_read_only_and_does_not_move_under_the_reader(model):
    view = model.tenants
    with pytest.raises(TypeError):
        view[9] = Tenant(9, "nine")  # type: ignore[index]
    send(model, created(3, "initech.example.net"))
    assert 3 not in view
    assert 3 in model.tenants
