"""Application signups and domain mappings: Gson's samples, each event's effect, reconciliation, observers."""


import pytest

from pca_core.api.secrets import Secret
from pca_core.stratos import events
from pca_core.stratos.signups import (
    ApplicationSignupModel,
    ArtifactRepository,
    DomainMapping,
    DomainMappingAdded,
    DomainMappingModel,
    DomainMappingRemoved,
    DomainMappingUpdated,
    Signup,
    SignupAdded,
    SignupRemoved,
    SignupUpdated,
)
from tests.support.samples import SAMPLES

COMPLETE = events.CompleteApplicationSignUpsEvent.TOPIC
APP = "php-tomcat-app"
PHP = "php.php1.domain"
TOMCAT = "tomcat.tomcat1.domain"
SHOP = "shop.acme.example.com"


def sample(name: str) -> bytes:
    return next(SAMPLES.glob(f"*.{name}.json")).read_bytes()


def send(model, event: events.Event):
    return model.handle(event.TOPIC, events.encode(event))


def wire_mapping(cluster_id: str, domain: str, context_path: str = "/", tenant_id: int = 1,
                 application_id: str = APP) -> events.DomainMapping:
    return events.DomainMapping(tenant_id=tenant_id, application_id=application_id, service_name="php",
                                cluster_id=cluster_id, domain_name=domain, context_path=context_path)


def mapping_added(cluster_id: str, domain: str, context_path: str = "/") -> events.DomainMappingAddedEvent:
    return events.DomainMappingAddedEvent(application_id=APP, tenant_id=1, service_name="php",
                                          cluster_id=cluster_id, domain_name=domain,
                                          context_path=context_path)


def mapping_removed(cluster_id: str, domain: str) -> events.DomainMappingRemovedEvent:
    return events.DomainMappingRemovedEvent(application_id=APP, tenant_id=1, service_name="php",
                                            cluster_id=cluster_id, domain_name=domain)


def complete(*signups: events.ApplicationSignUp) -> bytes:
    return events.encode(events.CompleteApplicationSignUpsEvent(application_sign_ups=list(signups)))


@pytest.fixture
def signups() -> ApplicationSignupModel:
    """A signup model loaded from Gson's sample: php-tomcat-app / tenant 1."""
    m = ApplicationSignupModel()
    m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent"))
    return m


@pytest.fixture
def mappings() -> DomainMappingModel:
    """A domain mapping model loaded from Gson's sample: shop.acme.example.com on php.php1.domain."""
    m = DomainMappingModel()
    m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent"))
    return m


# -- signups: the complete event -------------------------------------------------------------------


def test_the_complete_sample_loads_the_signup_with_its_repositories():
    m = ApplicationSignupModel()
    assert not m.initialized
    assert m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [SignupAdded(APP, 1)]
    assert m.initialized
    assert m.signup(APP, 1) == Signup(
        application_id=APP,
        tenant_id=1,
        cluster_ids=(PHP, TOMCAT),
        artifact_repositories=(ArtifactRepository(
            cartridge_type="php", alias="php1", private_repo=True,
            repo_url="https://git.example.org/acme/php-app.git", repo_username="acme-deployer",
            repo_password=Secret("FHOrlbgnprK56pmHsWJHRQ=="),
        ),),
        added_timestamp=1450003600000,
    )
    assert m.signups_for(APP) == [m.signup(APP, 1)]
    assert m.signups_for("other-app") == []
    assert list(m.signups) == [(APP, 1)]


def test_a_signup_never_prints_its_repository_password(signups):
    assert "FHOrlbgnprK56pmHsWJHRQ" not in repr(signups.signup(APP, 1))


def test_an_identical_complete_event_is_skipped_without_decoding(signups, mappings, monkeypatch):
    decoded = []
    real_decode = events.decode
    monkeypatch.setattr(events, "decode", lambda *a: decoded.append(a) or real_decode(*a))
    seen = []
    signups.observe(seen.append)
    mappings.observe(seen.append)
    body = sample("CompleteApplicationSignUpsEvent")
    assert signups.handle(COMPLETE, body) == []
    assert mappings.handle(COMPLETE, body) == []
    assert decoded == []
    assert seen == []
    signups.handle(COMPLETE, complete())
    assert len(decoded) == 1


def test_after_an_incremental_change_the_same_snapshot_is_reconciled_again(signups, mappings):
    send(signups, events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=1))
    send(mappings, mapping_removed(PHP, SHOP))
    assert signups.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [SignupAdded(APP, 1)]
    assert mappings.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [
        DomainMappingAdded(PHP, SHOP)]
    assert signups.signup(APP, 1) is not None
    assert mappings.mapping(PHP, SHOP) is not None


def test_an_incremental_event_that_changes_nothing_keeps_the_snapshot_skippable(signups, mappings,
                                                                               monkeypatch):
    send(signups, events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=99))
    send(mappings, mapping_removed(PHP, "unknown.example"))
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert signups.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == []
    assert mappings.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == []


def test_a_complete_event_applied_directly_forgets_the_last_payload(signups):
    assert signups.apply(events.CompleteApplicationSignUpsEvent(application_sign_ups=[])) == [
        SignupRemoved(APP, 1)]
    assert signups.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [SignupAdded(APP, 1)]


def test_a_complete_event_without_a_list_changes_nothing_and_initializes_nothing(signups, mappings,
                                                                                 monkeypatch):
    body = b'{"applicationSignUps":null}'
    for fresh in (ApplicationSignupModel(), DomainMappingModel()):
        assert fresh.handle(COMPLETE, body) == []
        assert not fresh.initialized
    # The loaded models still reflect the sample, so the sample is still skipped.
    assert signups.handle(COMPLETE, body) == []
    assert mappings.handle(COMPLETE, body) == []
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert signups.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == []
    assert mappings.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == []


def test_a_differing_complete_event_makes_the_same_signup_changes_as_the_incremental_events(signups):
    incremental = ApplicationSignupModel()
    incremental.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent"))

    reconciled = signups.handle(COMPLETE, complete(
        events.ApplicationSignUp(tenant_id=2, application_id=APP, cluster_ids=[PHP]),
        events.ApplicationSignUp(tenant_id=1, application_id="wordpress", cluster_ids=["wp.domain"]),
    ))
    by_events = [
        *send(incremental, events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=1)),
        *send(incremental, events.ApplicationSignUpAddedEvent(application_id=APP, tenant_id=2,
                                                              cluster_ids=[PHP])),
        *send(incremental, events.ApplicationSignUpAddedEvent(application_id="wordpress", tenant_id=1,
                                                              cluster_ids=["wp.domain"])),
    ]
    assert reconciled == by_events
    assert reconciled == [SignupRemoved(APP, 1), SignupAdded(APP, 2), SignupAdded("wordpress", 1)]
    assert dict(signups.signups) == dict(incremental.signups)


def test_a_complete_event_replaces_the_thin_record_of_an_earlier_added_event():
    # In Java the added event's record (cluster ids only) hid the snapshot's repositories for good.
    m = ApplicationSignupModel()
    m.handle(events.ApplicationSignUpAddedEvent.TOPIC, sample("ApplicationSignUpAddedEvent"))
    assert m.signup(APP, 1).artifact_repositories == ()
    assert m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [SignupUpdated(APP, 1)]
    assert [r.alias for r in m.signup(APP, 1).artifact_repositories] == ["php1"]


def test_a_repeated_signup_in_a_complete_event_keeps_the_first():
    m = ApplicationSignupModel()
    changes = m.handle(COMPLETE, complete(
        events.ApplicationSignUp(tenant_id=1, application_id=APP, cluster_ids=["first"]),
        events.ApplicationSignUp(tenant_id=1, application_id=APP, cluster_ids=["second"]),
    ))
    assert changes == [SignupAdded(APP, 1)]
    assert m.signup(APP, 1).cluster_ids == ("first",)


def test_a_complete_event_without_a_signup_list_changes_nothing():
    signup_model, mapping_model = ApplicationSignupModel(), DomainMappingModel()
    for m in (signup_model, mapping_model):
        assert m.handle(COMPLETE, b"{}") == []
        assert not m.initialized
        assert m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) != []


def test_signups_without_their_keys_are_skipped():
    m = ApplicationSignupModel()
    changes = m.handle(COMPLETE, complete(
        events.ApplicationSignUp(tenant_id=1), events.ApplicationSignUp(application_id=APP),
        events.ApplicationSignUp(tenant_id=2, application_id=APP)))
    assert changes == [SignupAdded(APP, 2)]


# -- signups: incremental events -------------------------------------------------------------------


def test_added_and_removed_apply_before_any_complete_event():
    # Java has no INIT gate on the signup events.
    m = ApplicationSignupModel()
    assert m.handle(events.ApplicationSignUpAddedEvent.TOPIC, sample("ApplicationSignUpAddedEvent")) == [
        SignupAdded(APP, 1)]
    assert m.signup(APP, 1) == Signup(APP, 1, cluster_ids=(PHP, TOMCAT))
    assert not m.initialized
    assert m.handle(events.ApplicationSignUpRemovedEvent.TOPIC, sample("ApplicationSignUpRemovedEvent")) == [
        SignupRemoved(APP, 1)]
    assert m.signup(APP, 1) is None


def test_an_added_event_for_a_known_signup_keeps_the_first_record(signups):
    before = signups.signup(APP, 1)
    assert send(signups, events.ApplicationSignUpAddedEvent(application_id=APP, tenant_id=1,
                                                            cluster_ids=["other"])) == []
    assert signups.signup(APP, 1) == before


def test_an_added_event_without_cluster_ids_adds_a_signup_without_clusters():
    m = ApplicationSignupModel()
    added = send(m, events.ApplicationSignUpAddedEvent(application_id=APP, tenant_id=3))
    assert added == [SignupAdded(APP, 3)]
    assert m.signup(APP, 3).cluster_ids == ()


@pytest.mark.parametrize("event", [
    events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=99),
    events.ApplicationSignUpRemovedEvent(application_id="unknown-app", tenant_id=1),
    events.ApplicationSignUpRemovedEvent(),
    events.ApplicationSignUpAddedEvent(tenant_id=1, cluster_ids=[PHP]),
], ids=repr)
def test_signup_events_for_unknown_or_unnamed_signups_are_no_ops(signups, event):
    before = dict(signups.signups)
    assert send(signups, event) == []
    assert dict(signups.signups) == before


# -- domain mappings -------------------------------------------------------------------------------


def test_the_complete_sample_loads_the_domain_mappings():
    m = DomainMappingModel()
    assert not m.initialized
    assert m.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [DomainMappingAdded(PHP, SHOP)]
    assert m.initialized
    expected = DomainMapping(cluster_id=PHP, domain_name=SHOP, application_id=APP, tenant_id=1,
                             service_name="php", context_path="/shop")
    assert m.mapping(PHP, SHOP) == expected
    assert m.mappings_for(PHP) == [expected]
    assert m.mappings_for(TOMCAT) == []
    assert dict(m.mappings) == {(PHP, SHOP): expected}


def test_signups_without_domain_mappings_still_initialize_the_domain_mappings():
    # On Java master a null domainMappings threw, and domain mappings never initialized (§13 #17).
    m = DomainMappingModel()
    assert m.handle(COMPLETE, complete(events.ApplicationSignUp(tenant_id=1, application_id=APP))) == []
    assert m.initialized
    assert send(m, mapping_added(PHP, SHOP)) == [DomainMappingAdded(PHP, SHOP)]


@pytest.mark.parametrize("name", ["DomainMappingAddedEvent", "DomainMappingRemovedEvent"])
def test_domain_mapping_events_before_the_first_complete_event_are_dropped(name):
    m = DomainMappingModel()
    seen = []
    m.observe(seen.append)
    assert m.handle(f"domain/mapping/{name}", sample(name)) == []
    assert dict(m.mappings) == {}
    assert seen == []


def test_the_domain_mapping_gate_comes_before_decoding_and_holds_for_decoded_events_too(monkeypatch):
    m = DomainMappingModel()
    monkeypatch.setattr(events, "decode", pytest.fail)
    assert m.handle(events.DomainMappingAddedEvent.TOPIC, b"not even JSON") == []
    assert m.apply(mapping_added(PHP, SHOP)) == []
    assert dict(m.mappings) == {}


def test_the_added_and_removed_samples(mappings):
    mappings.handle(COMPLETE, complete())  # start from no mappings
    added = mappings.handle(events.DomainMappingAddedEvent.TOPIC, sample("DomainMappingAddedEvent"))
    assert added == [DomainMappingAdded(PHP, SHOP)]
    assert mappings.mapping(PHP, SHOP).context_path == "/shop"
    removed = mappings.handle(events.DomainMappingRemovedEvent.TOPIC, sample("DomainMappingRemovedEvent"))
    assert removed == [DomainMappingRemoved(PHP, SHOP)]
    assert mappings.mapping(PHP, SHOP) is None
    assert mappings.mappings_for(PHP) == []


def test_a_mapping_added_twice_is_kept_once(mappings):
    # Java appended a duplicate; one removal then left the mapping in place.
    assert mappings.handle(events.DomainMappingAddedEvent.TOPIC, sample("DomainMappingAddedEvent")) == []
    assert len(mappings.mappings_for(PHP)) == 1
    send(mappings, mapping_removed(PHP, SHOP))
    assert mappings.mappings_for(PHP) == []


def test_a_mapping_added_again_with_another_context_path_is_updated(mappings):
    assert send(mappings, mapping_added(PHP, SHOP, "/store")) == [DomainMappingUpdated(PHP, SHOP)]
    assert mappings.mapping(PHP, SHOP).context_path == "/store"


@pytest.mark.parametrize("event", [
    mapping_removed(PHP, "unknown.example"),
    mapping_removed(TOMCAT, SHOP),
    events.DomainMappingRemovedEvent(),
    events.DomainMappingAddedEvent(cluster_id=PHP),
    events.DomainMappingAddedEvent(domain_name=SHOP),
], ids=repr)
def test_domain_mapping_events_for_unknown_or_unnamed_mappings_are_no_ops(mappings, event):
    before = dict(mappings.mappings)
    assert send(mappings, event) == []
    assert dict(mappings.mappings) == before


def test_a_differing_complete_event_makes_the_same_mapping_changes_as_the_incremental_events(mappings):
    incremental = DomainMappingModel()
    incremental.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent"))
    for model in (mappings, incremental):
        send(model, mapping_added(PHP, "old.acme.example.com"))

    reconciled = mappings.handle(COMPLETE, complete(
        events.ApplicationSignUp(tenant_id=1, application_id=APP, domain_mappings=[
            wire_mapping(PHP, SHOP, "/"),
            wire_mapping(TOMCAT, "blog.acme.example.com", "/blog"),
        ]),
        events.ApplicationSignUp(tenant_id=2, application_id=APP, domain_mappings=[
            wire_mapping(PHP, "globex.example.org", tenant_id=2),
        ]),
    ))
    by_events = [
        *send(incremental, mapping_removed(PHP, "old.acme.example.com")),
        *send(incremental, mapping_added(PHP, SHOP, "/")),
        *send(incremental, mapping_added(TOMCAT, "blog.acme.example.com", "/blog")),
        *send(incremental, events.DomainMappingAddedEvent(
            application_id=APP, tenant_id=2, service_name="php", cluster_id=PHP,
            domain_name="globex.example.org", context_path="/")),
    ]
    assert reconciled == by_events == [
        DomainMappingRemoved(PHP, "old.acme.example.com"),
        DomainMappingUpdated(PHP, SHOP),
        DomainMappingAdded(TOMCAT, "blog.acme.example.com"),
        DomainMappingAdded(PHP, "globex.example.org"),
    ]
    assert dict(mappings.mappings) == dict(incremental.mappings)
    assert [m.domain_name for m in mappings.mappings_for(PHP)] == [SHOP, "globex.example.org"]


def test_a_repeated_mapping_in_a_complete_event_keeps_the_last():
    m = DomainMappingModel()
    m.handle(COMPLETE, complete(
        events.ApplicationSignUp(tenant_id=1, application_id=APP,
                                 domain_mappings=[wire_mapping(PHP, SHOP, "/a")]),
        events.ApplicationSignUp(tenant_id=2, application_id=APP,
                                 domain_mappings=[wire_mapping(PHP, SHOP, "/b")]),
    ))
    assert m.mappings_for(PHP) == [DomainMapping(PHP, SHOP, APP, 1, "php", "/b")]


# -- the two models side by side -------------------------------------------------------------------


def test_each_model_ignores_the_other_models_events(signups, mappings):
    signups_before, mappings_before = dict(signups.signups), dict(mappings.mappings)
    assert mappings.handle(events.ApplicationSignUpAddedEvent.TOPIC,
                           sample("ApplicationSignUpAddedEvent")) == []
    assert mappings.handle(events.ApplicationSignUpRemovedEvent.TOPIC,
                           sample("ApplicationSignUpRemovedEvent")) == []
    assert signups.handle(events.DomainMappingRemovedEvent.TOPIC, sample("DomainMappingRemovedEvent")) == []
    assert signups.apply(events.TenantRemovedEvent(tenant_id=1)) == []
    assert dict(signups.signups) == signups_before
    assert dict(mappings.mappings) == mappings_before


def test_each_model_keeps_its_own_last_complete_event(signups, mappings):
    # The signup model saw the empty snapshot; the mapping model did not, so the sample is still its last.
    signups.handle(COMPLETE, complete())
    assert mappings.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == []
    assert signups.handle(COMPLETE, sample("CompleteApplicationSignUpsEvent")) == [SignupAdded(APP, 1)]


BOTH, SIGNUPS, MAPPINGS = ("signups", "mappings"), ("signups",), ("mappings",)


@pytest.mark.parametrize(("topic", "body", "owners"), [
    (COMPLETE, b'{"applicationSignUps":[{"tenantId":1', BOTH),
    (COMPLETE, b'{"applicationSignUps":[{"tenantId":"one"}]}', BOTH),
    (events.ApplicationSignUpAddedEvent.TOPIC, b'{"applicationId":"a","clusterIds":"c"}', SIGNUPS),
    (events.DomainMappingAddedEvent.TOPIC, b'{"clusterId":7}', MAPPINGS),
    ("application/signup/NoSuchEvent", b"{}", BOTH),
])
def test_a_malformed_message_raises_and_leaves_both_models_unchanged(signups, mappings, topic, body, owners):
    signups_before, mappings_before = dict(signups.signups), dict(mappings.mappings)
    models = {"signups": signups, "mappings": mappings}
    for name, model in models.items():
        if name in owners:
            with pytest.raises(events.EventDecodeError):
                model.handle(topic, body)
        else:  # not its event: ignored without being decoded
            assert model.handle(topic, body) == []
    assert dict(signups.signups) == signups_before
    assert dict(mappings.mappings) == mappings_before


# -- observers -------------------------------------------------------------------------------------


def test_observers_receive_the_changes_and_a_failing_one_breaks_nothing(signups, mappings):
    def fail(change):
        raise RuntimeError("observer bug")

    seen = []
    for model in (signups, mappings):
        model.observe(fail)
        model.observe(seen.append)
    changes = send(signups, events.ApplicationSignUpAddedEvent(application_id=APP, tenant_id=2))
    changes += send(mappings, mapping_removed(PHP, SHOP))
    changes += send(signups, events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=2))
    assert seen == changes == [SignupAdded(APP, 2), DomainMappingRemoved(PHP, SHOP), SignupRemoved(APP, 2)]
    assert signups.signup(APP, 2) is None
    assert mappings.mapping(PHP, SHOP) is None


def test_the_views_are_read_only_snapshots(signups, mappings):
    signup_view, mapping_view = signups.signups, mappings.mappings
    with pytest.raises(TypeError):
        signup_view[("x", 1)] = Signup("x", 1)  # type: ignore[index]
    send(signups, events.ApplicationSignUpRemovedEvent(application_id=APP, tenant_id=1))
    send(mappings, mapping_removed(PHP, SHOP))
    assert (APP, 1) in signup_view
    assert (PHP, SHOP) in mapping_view
