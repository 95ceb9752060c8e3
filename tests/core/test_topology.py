"""The topology model: the Java processors' behaviour (stratos/processors.md), and reconciliation."""

import json
import logging
from collections import Counter

import pytest

from pca_core.stratos import events
from pca_core.stratos.events import (
    ApplicationClustersCreatedEvent,
    ApplicationClustersRemovedEvent,
    Cluster,
    ClusterCreatedEvent,
    ClusterDataHolder,
    ClusterInstance,
    ClusterInstanceActivatedEvent,
    ClusterInstanceCreatedEvent,
    ClusterInstanceInactivateEvent,
    ClusterInstanceTerminatedEvent,
    ClusterInstanceTerminatingEvent,
    ClusterRemovedEvent,
    ClusterResetEvent,
    ClusterStatus,
    ClusterStatusStateManager,
    CompleteTopologyEvent,
    Member,
    MemberActivatedEvent,
    MemberCreatedEvent,
    MemberInitializedEvent,
    MemberMaintenanceModeEvent,
    MemberReadyToShutdownEvent,
    MemberStartedEvent,
    MemberStatus,
    MemberStatusStateManager,
    MemberSuspendedEvent,
    MemberTerminatedEvent,
    Port,
    ServiceCreatedEvent,
    ServiceRemovedEvent,
    TenantCreatedEvent,
    Topology,
)
from pca_core.stratos.topology import (
    ClusterAdded,
    ClusterInstanceAdded,
    ClusterInstanceRemoved,
    ClusterInstanceStatusChanged,
    ClusterRemoved,
    ClusterUpdated,
    MemberAdded,
    MemberRemoved,
    MemberStatusChanged,
    MemberUpdated,
    ServiceAdded,
    ServiceRemoved,
    ServiceUpdated,
    TopologyModel,
)
from tests.support.samples import SAMPLES

COMPLETE = CompleteTopologyEvent.TOPIC

PHP, PHP1 = "php", "php.php1.domain"
TOMCAT, TOMCAT1, TOMCAT2 = "tomcat", "tomcat.tomcat1.domain", "tomcat.tomcat2.domain"
APP_INSTANCE = "php-tomcat-app-1"


def sample(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def send(model: TopologyModel, event: events.Event) -> list:
    """Sends ``event`` the way it arrives: encoded, on its topic."""
    return model.handle(type(event).TOPIC, events.encode(event))


def snapshot_of(model: TopologyModel) -> bytes:
    """A complete topology with exactly the model's content."""
    return events.encode(CompleteTopologyEvent(topology=Topology(service_map=model.topology.service_map)))


def state(model: TopologyModel) -> bytes:
    return events.encode(model.topology)


@pytest.fixture
def model() -> TopologyModel:
    topology = TopologyModel()
    topology.handle(COMPLETE, sample("topology.CompleteTopologyEvent"))
    return topology


def php_member_event(cls, member_id="php.member-2", **fields):
    return cls(service_name=PHP, cluster_id=PHP1, member_id=member_id, **fields)


# --- Complete topology ------------------------------------------------------------------------------------


def test_the_first_complete_topology_loads_the_services_clusters_and_members():
    topology = TopologyModel()
    assert not topology.initialized

    changes = topology.handle(COMPLETE, sample("topology.CompleteTopologyEvent"))

    assert topology.initialized
    assert set(topology.services) == {PHP, TOMCAT}
    assert {c.cluster_id for c in topology.topology.cluster_map.values()} == {PHP1, TOMCAT1, TOMCAT2}
    assert {name: topology.member_status(name) for name in (
        "php.member-1", "php.member-2", "tomcat.member-1", "tomcat.member-2", "tomcat.member-3")} == {
        "php.member-1": MemberStatus.ACTIVE, "php.member-2": MemberStatus.CREATED,
        "tomcat.member-1": MemberStatus.INITIALIZED, "tomcat.member-2": MemberStatus.STARTING,
        "tomcat.member-3": MemberStatus.READY_TO_SHUT_DOWN}
    php = topology.service(PHP)
    assert set(php.port_map) == {"8243", "8280"} and php.port_map["8280"].value == 80
    cluster = topology.cluster(TOMCAT2)
    assert cluster is topology.service(TOMCAT).cluster_id_cluster_map[TOMCAT2]
    assert [k.id for k in cluster.kubernetes_services] == ["tomcat-tomcat2-domain-http",
                                                           "tomcat-tomcat2-domain-https"]
    instance = cluster.instance_id_to_instance_context_map[APP_INSTANCE]
    assert instance.life_cycle_state_manager.state_stack[-1] == ClusterStatus.ACTIVE
    member = topology.member("php.member-1")
    assert member.default_private_ip == "10.0.0.11" and set(member.port_map) == {"8243", "8280"}
    # Everything the snapshot brought is announced, parents before children, each status once.
    assert changes[:2] == [ServiceAdded(TOMCAT), ClusterAdded(TOMCAT, TOMCAT2)]
    assert Counter(type(c) for c in changes) == {
        ServiceAdded: 2, ClusterAdded: 3, ClusterInstanceAdded: 3, ClusterInstanceStatusChanged: 3,
        MemberAdded: 5, MemberStatusChanged: 5}
    assert MemberStatusChanged(PHP, PHP1, "php.member-1", None, "Active") in changes


def test_the_model_ignores_the_complete_topologys_cluster_map():
    # Cloud Controller publishes "clusterMap": {}; Java rebuilds it from the services, and so does pca.
    data = json.loads(sample("topology.CompleteTopologyEvent"))
    data["topology"]["clusterMap"] = {}
    topology = TopologyModel()
    topology.handle(COMPLETE, json.dumps(data).encode())
    assert set(topology.topology.cluster_map) == {PHP1, TOMCAT1, TOMCAT2}


@pytest.mark.parametrize("variant", ["2015", "2015-03"])
def test_older_complete_topology_shapes_load(variant):
    topology = TopologyModel()
    topology.handle(COMPLETE, sample(f"topology.CompleteTopologyEvent.{variant}"))
    assert topology.initialized
    assert topology.member_status("tomcat.member-3") == MemberStatus.READY_TO_SHUT_DOWN
    assert topology.member_status("php.member-2") == MemberStatus.CREATED
    assert topology.member("php.member-1").default_private_ip == "10.0.0.11"
    if variant == "2015-03":  # access URLs were a list, and members had no instance id
        assert topology.cluster(PHP1).access_urls == ["http://php1.stratos.example.org:8280",
                                                      "https://php1.stratos.example.org:8243"]
        assert topology.member("php.member-1").instance_id is None
    else:
        assert topology.cluster(PHP1).access_urls[APP_INSTANCE][0] == "http://php1.stratos.example.org:8280"


def test_the_minimal_complete_topology_loads():
    topology = TopologyModel()
    changes = topology.handle(COMPLETE, sample("topology.CompleteTopologyEvent.minimal"))
    assert changes == [ServiceAdded(PHP), ClusterAdded(PHP, "php.php.domain"),
                       MemberAdded(PHP, "php.php.domain", "php.member-1"),
                       MemberStatusChanged(PHP, "php.php.domain", "php.member-1", None, "Created")]
    member = topology.member("php.member-1")
    assert (member.default_private_ip, member.default_public_ip, member.properties) == (
        "10.0.0.1", "20.0.0.1", {"prop1": "value1"})


def test_an_empty_complete_topology_initializes_an_empty_model():
    topology = TopologyModel()
    assert topology.handle(COMPLETE, b'{"topology":{"serviceMap":{}}}') == []
    assert topology.initialized and not topology.services


def test_a_complete_topology_without_a_service_map_is_ignored(caplog):
    topology = TopologyModel()
    with caplog.at_level(logging.WARNING, logger="pca_core.stratos.topology"):
        assert topology.handle(COMPLETE, b'{"topology":{}}') == []
    assert not topology.initialized
    assert "serviceMap" in caplog.text


# --- Initialization gate, unknown names, other events ----------------------------------------------------


def test_incremental_events_before_the_first_complete_topology_are_ignored(decodes):
    topology = TopologyModel()
    for name in ("ServiceCreatedEvent", "ClusterCreatedEvent", "MemberCreatedEvent", "MemberActivatedEvent"):
        topic, payload = f"topology/{name}", sample(f"topology.{name}")
        assert topology.handle(topic, payload) == []
        assert decodes == []  # the gate comes before parsing, as in Java
        assert topology.apply(events.decode(topic, payload)) == []
        decodes.clear()
    assert not topology.initialized
    assert not topology.services and topology.member("php.member-1") is None

    # Nothing was kept for later either: the snapshot alone makes the model.
    topology.handle(COMPLETE, sample("topology.CompleteTopologyEvent.minimal"))
    assert set(topology.services) == {PHP} and topology.member_status("php.member-1") == MemberStatus.CREATED


UNKNOWN = [
    ServiceRemovedEvent(service_name="nope"),
    ClusterCreatedEvent(cluster=Cluster(service_name="nope", cluster_id="c")),
    ClusterCreatedEvent(),
    ApplicationClustersCreatedEvent(cluster_list=[Cluster(service_name="nope", cluster_id="c")]),
    ApplicationClustersCreatedEvent(),
    ApplicationClustersRemovedEvent(cluster_data=[ClusterDataHolder(service_type=PHP, cluster_id="nope"),
                                                  ClusterDataHolder(service_type="nope", cluster_id=PHP1)]),
    ClusterRemovedEvent(service_name=PHP, cluster_id="nope"),
    ClusterRemovedEvent(service_name="nope", cluster_id=PHP1),
    ClusterInstanceCreatedEvent(service_name=PHP, cluster_id="nope",
                                cluster_instance=ClusterInstance(instance_id="new")),
    ClusterInstanceCreatedEvent(service_name=PHP, cluster_id=PHP1),
    ClusterInstanceCreatedEvent(service_name=PHP, cluster_id=PHP1, cluster_instance=ClusterInstance()),
    *(cls(service_name=PHP, cluster_id=PHP1, instance_id="nope") for cls in (
        ClusterInstanceActivatedEvent, ClusterInstanceInactivateEvent, ClusterInstanceTerminatingEvent,
        ClusterInstanceTerminatedEvent, ClusterResetEvent)),
    *(cls(service_name=PHP, cluster_id=PHP1) for cls in (   # a null instance id matches nothing
        ClusterInstanceInactivateEvent, ClusterResetEvent)),
    *(cls(service_name="nope", cluster_id=PHP1, instance_id=APP_INSTANCE) for cls in (
        ClusterInstanceActivatedEvent, ClusterInstanceTerminatedEvent)),
    MemberCreatedEvent(service_name=PHP, cluster_id="nope", member_id="m"),
    MemberCreatedEvent(service_name="nope", cluster_id=PHP1, member_id="m"),
    MemberCreatedEvent(service_name=PHP, cluster_id=PHP1),
    *(php_member_event(cls, member_id="nope") for cls in (
        MemberInitializedEvent, MemberStartedEvent, MemberMaintenanceModeEvent, MemberReadyToShutdownEvent,
        MemberSuspendedEvent, MemberTerminatedEvent)),
    php_member_event(MemberActivatedEvent, member_id="nope", default_private_ip="10.0.0.1",
                     port_map={"80": Port(protocol="http", value=80, proxy=80)}),
    MemberStartedEvent(service_name=PHP, cluster_id="nope", member_id="php.member-1"),
    MemberTerminatedEvent(service_name="nope", cluster_id=PHP1, member_id="php.member-1"),
]


@pytest.mark.parametrize("event", UNKNOWN, ids=lambda e: type(e).__name__)
def test_events_naming_what_the_model_does_not_hold_are_dropped(model, event):
    before = state(model)
    seen = []
    model.observe(seen.append)
    assert send(model, event) == []
    assert state(model) == before
    assert seen == []


def test_events_of_other_chains_change_nothing(model):
    before = state(model)
    assert model.handle("tenant/TenantCreatedEvent", sample("tenant.TenantCreatedEvent")) == []
    assert model.apply(TenantCreatedEvent()) == []
    assert state(model) == before


def test_a_malformed_message_raises_a_decode_error_and_changes_nothing(model):
    before = state(model)
    with pytest.raises(events.EventDecodeError):
        model.handle("topology/MemberStartedEvent", b'{"memberId": 12')
    with pytest.raises(events.EventDecodeError):
        model.handle(COMPLETE, b'{"topology": {"serviceMap": []}}')
    with pytest.raises(events.EventDecodeError):
        model.handle("topology/NoSuchEvent", b"{}")
    assert state(model) == before


# --- Services and clusters --------------------------------------------------------------------------------


def test_service_created_adds_a_service_with_its_ports_and_properties(model):
    event = ServiceCreatedEvent(service_name="mysql", service_type="SingleTenant",
                                port_map={"3306": Port(protocol="tcp", value=3306, proxy=3306)},
                                properties={"category": "data"})
    assert send(model, event) == [ServiceAdded("mysql")]
    service = model.service("mysql")
    assert service.service_type == "SingleTenant"
    assert service.port_map == {"3306": Port(protocol="tcp", value=3306, proxy=3306)}
    # Java drops the properties; pca keeps them so that the next snapshot agrees with the model.
    assert service.properties == {"category": "data"}
    assert service.cluster_id_cluster_map == {}
    # An existing service is left as it is.
    assert send(model, ServiceCreatedEvent(service_name=PHP, service_type="MultiTenant")) == []
    assert model.service(PHP).service_type == "SingleTenant"


def test_service_removed_removes_the_service_with_everything_in_it(model):
    changes = model.handle("topology/ServiceRemovedEvent", sample("topology.ServiceRemovedEvent"))
    assert changes == [MemberRemoved(PHP, PHP1, "php.member-1"), MemberRemoved(PHP, PHP1, "php.member-2"),
                       ClusterInstanceRemoved(PHP, PHP1, APP_INSTANCE), ClusterRemoved(PHP, PHP1),
                       ServiceRemoved(PHP)]
    assert model.service(PHP) is None and model.cluster(PHP1) is None
    assert model.member("php.member-1") is None and model.member_status("php.member-2") is None
    assert model.member("tomcat.member-1") is not None


def test_cluster_created_adds_the_cluster_with_its_members_and_instances(model):
    cluster = Cluster(
        service_name=PHP, cluster_id="php.php2.domain", host_names=["php2.example.org"],
        member_map={"php.member-9": Member(
            member_id="php.member-9",
            member_state_manager=MemberStatusStateManager(state_stack=["Created", "Initialized"]))},
        instance_id_to_instance_context_map={"i-2": ClusterInstance(
            instance_id="i-2", life_cycle_state_manager=ClusterStatusStateManager(state_stack=["Created"]))})
    changes = send(model, ClusterCreatedEvent(cluster=cluster))
    assert changes == [
        ClusterAdded(PHP, "php.php2.domain"),
        ClusterInstanceAdded(PHP, "php.php2.domain", "i-2"),
        ClusterInstanceStatusChanged(PHP, "php.php2.domain", "i-2", None, "Created"),
        MemberAdded(PHP, "php.php2.domain", "php.member-9"),
        MemberStatusChanged(PHP, "php.php2.domain", "php.member-9", None, "Initialized")]
    assert model.cluster("php.php2.domain").host_names == ["php2.example.org"]  # unlike Java, indexed too
    assert model.service(PHP).cluster_id_cluster_map["php.php2.domain"] is model.cluster("php.php2.domain")
    assert model.member_status("php.member-9") == MemberStatus.INITIALIZED
    # A cluster that exists is left as it is.
    assert model.handle("topology/ClusterCreatedEvent", sample("topology.ClusterCreatedEvent")) == []


def test_cluster_removed_removes_the_cluster_and_its_members(model):
    changes = model.handle("topology/ClusterRemovedEvent", sample("topology.ClusterRemovedEvent"))
    assert changes == [MemberRemoved(PHP, PHP1, "php.member-1"), MemberRemoved(PHP, PHP1, "php.member-2"),
                       ClusterInstanceRemoved(PHP, PHP1, APP_INSTANCE), ClusterRemoved(PHP, PHP1)]
    assert model.cluster(PHP1) is None and PHP1 not in model.service(PHP).cluster_id_cluster_map
    assert model.member("php.member-1") is None
    assert send(model, ClusterRemovedEvent(service_name=PHP, cluster_id=PHP1)) == []


def test_application_clusters_created_adds_each_new_cluster(model):
    # The sample's clusters exist already.
    assert model.handle("topology/ApplicationClustersCreatedEvent",
                        sample("topology.ApplicationClustersCreatedEvent")) == []
    # Java stops at a cluster of an unknown service; pca skips only that cluster.
    event = ApplicationClustersCreatedEvent(app_id="app", cluster_list=[
        Cluster(service_name="nope", cluster_id="x.domain"),
        Cluster(service_name=TOMCAT, cluster_id="tomcat.tomcat3.domain")])
    assert send(model, event) == [ClusterAdded(TOMCAT, "tomcat.tomcat3.domain")]
    assert model.cluster("tomcat.tomcat3.domain") is not None and model.cluster("x.domain") is None


def test_application_clusters_removed_removes_each_named_cluster(model):
    changes = model.handle("topology/ApplicationClustersRemovedEvent",
                           sample("topology.ApplicationClustersRemovedEvent"))
    assert changes[-1] == ClusterRemoved(PHP, PHP1)
    assert model.cluster(PHP1) is None and model.member("php.member-2") is None
    assert model.service(PHP).cluster_id_cluster_map == {}


# --- Cluster instances ------------------------------------------------------------------------------------


def instance_status(model, cluster_id=PHP1, instance_id=APP_INSTANCE):
    instances = model.cluster(cluster_id).instance_id_to_instance_context_map
    return instances[instance_id].life_cycle_state_manager.state_stack[-1]


def test_cluster_instance_created_adds_the_instance_as_received(model):
    # The sample's instance exists already.
    assert model.handle("topology/ClusterInstanceCreatedEvent",
                        sample("topology.ClusterInstanceCreatedEvent")) == []
    instance = ClusterInstance(instance_id="php-tomcat-app-2", alias="php2",
                               life_cycle_state_manager=ClusterStatusStateManager(state_stack=["Created"]))
    changes = send(model, ClusterInstanceCreatedEvent(service_name=PHP, cluster_id=PHP1,
                                                      cluster_instance=instance))
    assert changes == [ClusterInstanceAdded(PHP, PHP1, "php-tomcat-app-2"),
                       ClusterInstanceStatusChanged(PHP, PHP1, "php-tomcat-app-2", None, "Created")]
    assert model.cluster(PHP1).instance_id_to_instance_context_map["php-tomcat-app-2"] == instance


def test_cluster_instance_activated_sets_urls_and_ips_unless_already_active(model):
    cluster = model.cluster(PHP1)
    activated = sample("topology.ClusterInstanceActivatedEvent")
    # The sample's instance is Active already: Java ignores the event entirely, URLs and IPs included.
    assert model.handle("topology/ClusterInstanceActivatedEvent", activated) == []
    assert cluster.load_balancer_ips == ["192.168.56.100"]

    send(model, ClusterInstanceInactivateEvent(service_name=PHP, cluster_id=PHP1, instance_id=APP_INSTANCE))
    changes = model.handle("topology/ClusterInstanceActivatedEvent", activated)
    assert changes == [ClusterUpdated(PHP, PHP1),
                       ClusterInstanceStatusChanged(PHP, PHP1, APP_INSTANCE, "Inactive", "Active")]
    assert cluster.load_balancer_ips == ["192.168.56.100", "192.168.56.101"]
    assert cluster.access_urls[APP_INSTANCE] == ["http://php1.stratos.example.org:8280",
                                                 "https://php1.stratos.example.org:8243"]
    assert cluster.instance_id_to_instance_context_map[APP_INSTANCE].life_cycle_state_manager.state_stack == [
        "Created", "Active", "Inactive", "Active"]

    # Without load-balancer IPs the cluster keeps its own; unchanged URLs announce no cluster update.
    send(model, ClusterInstanceInactivateEvent(service_name=PHP, cluster_id=PHP1, instance_id=APP_INSTANCE))
    event = events.decode_as(ClusterInstanceActivatedEvent, activated)
    event.load_balancer_ips = []
    assert send(model, event) == [ClusterInstanceStatusChanged(PHP, PHP1, APP_INSTANCE, "Inactive", "Active")]
    assert cluster.load_balancer_ips == ["192.168.56.100", "192.168.56.101"]


@pytest.mark.parametrize(("cls", "status"), [
    (ClusterInstanceInactivateEvent, "Inactive"),
    (ClusterInstanceTerminatingEvent, "Terminating"),
    (ClusterResetEvent, "Created"),
])
def test_cluster_instance_status_events_move_the_instance(model, cls, status):
    event = cls(service_name=PHP, cluster_id=PHP1, app_id="php-tomcat-app", instance_id=APP_INSTANCE)
    assert send(model, event) == [ClusterInstanceStatusChanged(PHP, PHP1, APP_INSTANCE, "Active", status)]
    assert instance_status(model) == status
    assert send(model, event) == []  # already there: nothing is pushed
    assert instance_status(model) == status


def test_cluster_instance_terminated_removes_the_instance_but_not_the_cluster(model):
    cluster = model.cluster(PHP1)
    instance = cluster.instance_id_to_instance_context_map[APP_INSTANCE]
    changes = model.handle("topology/ClusterInstanceTerminatedEvent",
                           sample("topology.ClusterInstanceTerminatedEvent"))
    assert changes == [ClusterInstanceRemoved(PHP, PHP1, APP_INSTANCE)]
    assert cluster.instance_id_to_instance_context_map == {}
    assert instance.life_cycle_state_manager.state_stack[-1] == ClusterStatus.TERMINATED
    assert model.cluster(PHP1) is cluster and APP_INSTANCE in cluster.access_urls  # as in Java
    assert model.member("php.member-1") is not None


def test_an_instance_without_a_state_manager_gets_one(model):
    instance = ClusterInstance(instance_id="bare")
    send(model, ClusterInstanceCreatedEvent(service_name=PHP, cluster_id=PHP1, cluster_instance=instance))
    changes = send(model, ClusterInstanceTerminatingEvent(service_name=PHP, cluster_id=PHP1,
                                                          instance_id="bare"))
    assert changes == [ClusterInstanceStatusChanged(PHP, PHP1, "bare", None, "Terminating")]
    assert instance_status(model, instance_id="bare") == "Terminating"


# --- Members ----------------------------------------------------------------------------------------------


def test_member_created_adds_a_member_in_status_created(model):
    event = php_member_event(MemberCreatedEvent, member_id="php.member-3", cluster_instance_id=APP_INSTANCE,
                             network_partition_id="np-1", partition_id="p-1", load_balancing_ip_type="Public",
                             init_time=1450000000001, properties={"PRIMARY": "false"})
    changes = send(model, event)
    assert changes == [MemberAdded(PHP, PHP1, "php.member-3"),
                       MemberStatusChanged(PHP, PHP1, "php.member-3", None, "Created")]
    member = model.member("php.member-3")
    assert member is model.cluster(PHP1).member_map["php.member-3"]
    assert (member.service_name, member.cluster_id, member.cluster_instance_id, member.network_partition_id,
            member.partition_id, member.load_balancing_ip_type, member.init_time, member.properties) == (
        PHP, PHP1, APP_INSTANCE, "np-1", "p-1", "Public", 1450000000001, {"PRIMARY": "false"})
    assert member.member_state_manager.state_stack == ["Created"]
    assert member.port_map == {}
    assert member.default_private_ip is member.default_public_ip is member.instance_id is None
    # An existing member is left as it is.
    assert model.handle("topology/MemberCreatedEvent", sample("topology.MemberCreatedEvent")) == []
    assert model.member_status("php.member-1") == MemberStatus.ACTIVE


def test_member_initialized_overwrites_the_instance_id_and_ips(model):
    event = php_member_event(MemberInitializedEvent, instance_id="i-new", default_private_ip="10.9.9.9",
                             member_private_ips=["10.9.9.9"], properties={"ignored": "yes"})
    assert send(model, event) == [MemberStatusChanged(PHP, PHP1, "php.member-2", "Created", "Initialized")]
    member = model.member("php.member-2")
    assert (member.instance_id, member.default_private_ip, member.member_private_ips) == (
        "i-new", "10.9.9.9", ["10.9.9.9"])
    assert member.default_public_ip is None and member.member_public_ips is None  # null overwrites
    assert member.properties == {"MIN_COUNT": "1", "PRIMARY": "false"}


def test_member_activated_merges_ports_and_overwrites_private_ips_only(model):
    send(model, php_member_event(MemberStartedEvent))
    event = php_member_event(MemberActivatedEvent, default_private_ip="10.7.7.7",
                             member_private_ips=["10.7.7.7"], default_public_ip="30.0.0.1",
                             member_public_ips=["30.0.0.1"],
                             port_map={"8280": Port(protocol="http", value=8080, proxy=8280),
                                       "9000": Port(protocol="tcp", value=9000, proxy=9000)})
    assert send(model, event) == [MemberStatusChanged(PHP, PHP1, "php.member-2", "Starting", "Active")]
    member = model.member("php.member-2")
    assert member.port_map == {"8243": Port(protocol="https", value=443, proxy=8243),
                               "8280": Port(protocol="http", value=8080, proxy=8280),
                               "9000": Port(protocol="tcp", value=9000, proxy=9000)}
    assert (member.default_private_ip, member.member_private_ips) == ("10.7.7.7", ["10.7.7.7"])
    assert (member.default_public_ip, member.member_public_ips) == ("20.0.0.12", ["20.0.0.12"])

    # Already Active: Java changes nothing, not even the fields.
    event.default_private_ip = "10.8.8.8"
    assert send(model, event) == []
    assert member.default_private_ip == "10.7.7.7"


def test_member_activated_without_a_private_ip_or_ports_is_dropped(model, caplog):
    with caplog.at_level(logging.WARNING, logger="pca_core.stratos.topology"):
        assert send(model, php_member_event(MemberActivatedEvent, port_map={
            "80": Port(protocol="http", value=80, proxy=80)})) == []
        assert send(model, php_member_event(MemberActivatedEvent, default_private_ip="10.0.0.1")) == []
    assert model.member_status("php.member-2") == MemberStatus.CREATED
    assert "without a private IP or ports" in caplog.text


@pytest.mark.parametrize(("name", "status"), [
    ("MemberStartedEvent", "Starting"),
    ("MemberMaintenanceModeEvent", "In_Maintenance"),
    ("MemberReadyToShutdownEvent", "ReadyToShutDown"),
    ("MemberSuspendedEvent", "Suspended"),
])
def test_member_status_events_push_their_status(model, name, status):
    # The samples are about php.member-1, which is Active; Java applies even "invalid" transitions.
    payload = sample(f"topology.{name}")
    changes = model.handle(f"topology/{name}", payload)
    assert changes == [MemberStatusChanged(PHP, PHP1, "php.member-1", "Active", status)]
    assert model.member_status("php.member-1") == status
    assert model.member("php.member-1").member_state_manager.state_stack == [
        "Created", "Initialized", "Starting", "Active", status]
    assert model.handle(f"topology/{name}", payload) == []  # already there
    assert len(model.member("php.member-1").member_state_manager.state_stack) == 5


def test_the_status_is_the_top_of_the_stack_and_late_events_regress_it(model):
    for cls in (MemberInitializedEvent, MemberStartedEvent):
        send(model, php_member_event(cls))
    send(model, php_member_event(MemberActivatedEvent, default_private_ip="10.0.0.12",
                                 port_map={"8280": Port(protocol="http", value=80, proxy=8280)}))
    assert model.member_status("php.member-2") == MemberStatus.ACTIVE
    # A late MemberStarted moves an Active member back, as in Java; the history keeps it all.
    assert send(model, php_member_event(MemberStartedEvent)) == [
        MemberStatusChanged(PHP, PHP1, "php.member-2", "Active", "Starting")]
    assert model.member("php.member-2").member_state_manager.state_stack == [
        "Created", "Initialized", "Starting", "Active", "Starting"]
    assert model.member_status("php.member-2") == MemberStatus.STARTING


def test_a_member_without_a_state_manager_gets_one(model):
    send(model, ClusterCreatedEvent(cluster=Cluster(service_name=PHP, cluster_id="c", member_map={
        "bare": Member(member_id="bare")})))
    assert model.member_status("bare") is None
    changes = send(model, MemberStartedEvent(service_name=PHP, cluster_id="c", member_id="bare"))
    assert changes == [MemberStatusChanged(PHP, "c", "bare", None, "Starting")]
    assert model.member("bare").member_state_manager == MemberStatusStateManager(
        state_stack=["Starting"], identifier="bare")


def test_member_terminated_removes_the_member(model):
    changes = model.handle("topology/MemberTerminatedEvent", sample("topology.MemberTerminatedEvent"))
    assert changes == [MemberRemoved(PHP, PHP1, "php.member-1")]
    assert model.member("php.member-1") is None and model.member_status("php.member-1") is None
    assert "php.member-1" not in model.cluster(PHP1).member_map
    assert model.handle("topology/MemberTerminatedEvent", sample("topology.MemberTerminatedEvent")) == []


# --- Observers --------------------------------------------------------------------------------------------


def test_observers_get_each_change_after_the_model_is_updated(model):
    seen = []

    def observer(change):
        seen.append((change, model.member_status(change.member_id)))

    stop = model.observe(observer)
    changes = send(model, php_member_event(MemberStartedEvent))
    assert seen == [(changes[0], "Starting")]
    stop()
    send(model, php_member_event(MemberSuspendedEvent))
    assert len(seen) == 1


def test_a_failing_observer_breaks_neither_the_model_nor_the_other_observers(model, caplog):
    def broken(change):
        raise RuntimeError("observer bug")

    seen = []
    model.observe(broken)
    model.observe(seen.append)
    with caplog.at_level(logging.ERROR):
        changes = model.handle("topology/MemberTerminatedEvent", sample("topology.MemberTerminatedEvent"))
    assert changes == seen == [MemberRemoved(PHP, PHP1, "php.member-1")]
    assert model.member("php.member-1") is None
    assert "observer bug" in caplog.text
    assert send(model, php_member_event(MemberStartedEvent)) == seen[1:]  # still working


def test_an_update_that_changes_nothing_notifies_nobody(model):
    seen = []
    model.observe(seen.append)
    model.handle("topology/MemberCreatedEvent", sample("topology.MemberCreatedEvent"))
    model.handle(COMPLETE, sample("topology.CompleteTopologyEvent"))
    assert seen == []


# --- Later complete topologies: skipped when identical, reconciled otherwise -----------------------------


@pytest.fixture
def decodes(monkeypatch):
    """The topics of the messages decoded since the test began (``events.decode`` calls)."""
    counted = []
    real = events.decode

    def counting(topic, payload):
        counted.append(topic)
        return real(topic, payload)

    monkeypatch.setattr("pca_core.stratos.events.decode", counting)
    return counted


def one_byte_changed(payload: bytes, old: bytes, new: bytes, *, first: bool = False) -> bytes:
    """``payload`` with the last occurrence of ``old`` (in the serviceMap, which follows the clusterMap), or
    the first (in the clusterMap), replaced by ``new``, which differs from it by one byte."""
    at = payload.index(old) if first else payload.rindex(old)
    changed = payload[:at] + new + payload[at + len(old):]
    assert sum(a != b for a, b in zip(payload, changed, strict=True)) == 1
    return changed


def test_an_identical_complete_topology_is_skipped_without_decoding(model, decodes):
    payload = sample("topology.CompleteTopologyEvent")
    assert model.handle(COMPLETE, payload) == []
    assert model.handle(COMPLETE, bytes(bytearray(payload))) == []  # equal bytes, another object
    assert model.handle(COMPLETE, payload.decode()) == []  # the same body as text
    assert decodes == []

    changed = one_byte_changed(payload, b'"defaultPrivateIP":"10.0.0.12"', b'"defaultPrivateIP":"10.0.0.13"')
    assert model.handle(COMPLETE, changed) == [MemberUpdated(PHP, PHP1, "php.member-2")]
    assert decodes == [COMPLETE]
    assert model.member("php.member-2").default_private_ip == "10.0.0.13"
    # The original is not the last one applied any more: it is decoded and reconciled back.
    assert model.handle(COMPLETE, payload) == [MemberUpdated(PHP, PHP1, "php.member-2")]
    assert model.member("php.member-2").default_private_ip == "10.0.0.12"
    assert len(decodes) == 2


def test_a_different_payload_with_the_same_content_is_decoded_and_changes_nothing(model, decodes):
    payload = sample("topology.CompleteTopologyEvent")
    # Only the clusterMap differs, which the model ignores.
    changed = one_byte_changed(payload, b'"php1.stratos.example.org"', b'"php9.stratos.example.org"',
                               first=True)
    assert model.handle(COMPLETE, changed) == []
    assert decodes == [COMPLETE]


def test_a_snapshot_without_a_service_map_leaves_the_last_one_skippable(model, decodes):
    assert model.handle(COMPLETE, b'{"topology":{}}') == []
    assert decodes == [COMPLETE]
    # It changed nothing, so the model still is the main sample, which is still skipped.
    assert model.handle(COMPLETE, sample("topology.CompleteTopologyEvent")) == []
    assert decodes == [COMPLETE]


def test_the_same_snapshot_again_after_an_incremental_change_is_reconciled(model):
    # The kept snapshot only stands for the model while no event has changed it since: a late event that the
    # snapshot already contradicted is undone by the next copy of that snapshot.
    payload = sample("topology.CompleteTopologyEvent")
    send(model, php_member_event(MemberStartedEvent))
    assert model.handle(COMPLETE, payload) == [
        MemberStatusChanged(PHP, PHP1, "php.member-2", "Starting", "Created")]
    assert model.member_status("php.member-2") == MemberStatus.CREATED
    assert model.handle(COMPLETE, payload) == []


def test_a_complete_topology_applied_as_an_event_is_reconciled_too(model, decodes):
    event = events.decode(COMPLETE, sample("topology.CompleteTopologyEvent.minimal"))
    changes = model.apply(event)
    assert ServiceRemoved(TOMCAT) in changes and ClusterAdded(PHP, "php.php.domain") in changes
    # The model no longer reflects the main sample's bytes, so they are decoded again.
    decodes.clear()
    assert model.handle(COMPLETE, sample("topology.CompleteTopologyEvent")) != []
    assert decodes == [COMPLETE]


def test_reconciliation_announces_what_the_incremental_events_would_have():
    # A snapshot shows where each thing is, not the way it went there, so each thing changes once here.
    incremental, reconciled = TopologyModel(), TopologyModel()
    for topology in (incremental, reconciled):
        topology.handle(COMPLETE, sample("topology.CompleteTopologyEvent"))
        send(topology, ClusterInstanceInactivateEvent(service_name=TOMCAT, cluster_id=TOMCAT1,
                                                      instance_id=APP_INSTANCE))

    steps = [
        php_member_event(MemberCreatedEvent, member_id="php.member-3", init_time=1, properties={"a": "b"}),
        MemberTerminatedEvent(service_name=TOMCAT, cluster_id=TOMCAT1, member_id="tomcat.member-1"),
        MemberActivatedEvent(service_name=TOMCAT, cluster_id=TOMCAT1, member_id="tomcat.member-2",
                             default_private_ip="10.5.5.5",
                             port_map={"9443": Port(protocol="https", value=9443, proxy=9443)}),
        php_member_event(MemberInitializedEvent, instance_id="i-2", default_private_ip="10.0.0.12"),
        ClusterRemovedEvent(service_name=TOMCAT, cluster_id=TOMCAT2),
        ServiceCreatedEvent(service_name="mysql", service_type="SingleTenant", port_map={}),
        ClusterCreatedEvent(cluster=Cluster(service_name="mysql", cluster_id="mysql.domain", member_map={},
                                            instance_id_to_instance_context_map={})),
        ClusterInstanceCreatedEvent(
            service_name="mysql", cluster_id="mysql.domain",
            cluster_instance=ClusterInstance(
                instance_id="mysql-1",
                life_cycle_state_manager=ClusterStatusStateManager(state_stack=["Created"]))),
        MemberCreatedEvent(service_name="mysql", cluster_id="mysql.domain", member_id="mysql.member-1"),
        ClusterInstanceInactivateEvent(service_name=PHP, cluster_id=PHP1, instance_id=APP_INSTANCE),
        ClusterInstanceActivatedEvent(service_name=TOMCAT, cluster_id=TOMCAT1, instance_id=APP_INSTANCE,
                                      access_urls=["http://new"], load_balancer_ips=["1.2.3.4"]),
    ]
    expected = [change for step in steps for change in send(incremental, step)]
    assert len(expected) == 17

    changes = reconciled.handle(COMPLETE, snapshot_of(incremental))

    assert Counter(changes) == Counter(expected)
    assert state(reconciled) == state(incremental)
    assert reconciled.member("mysql.member-1") is not None and reconciled.cluster(TOMCAT2) is None


def test_reconciliation_of_a_hand_edited_snapshot():
    original = sample("topology.CompleteTopologyEvent")
    data = json.loads(original)
    services = data["topology"]["serviceMap"]
    php1 = services[PHP]["clusterIdClusterMap"][PHP1]
    php1["memberMap"]["php.member-3"] = {"memberId": "php.member-3", "memberStateManager": {
        "stateStack": ["Created"], "identifier": "php.member-3"}}
    php1["memberMap"]["php.member-2"]["memberStateManager"]["stateStack"].append("Initialized")
    php1["memberMap"]["php.member-1"]["defaultPublicIP"] = "20.0.0.99"
    php1["memberMap"]["php.member-1"]["memberStateManager"]["stateStack"].insert(0, "Created")  # history only
    php1["hostNames"].append("www.example.org")
    php1["instanceIdToInstanceContextMap"][APP_INSTANCE]["lifeCycleStateManager"]["stateStack"].append("Inactive")
    del services[TOMCAT]["clusterIdClusterMap"][TOMCAT1]["memberMap"]["tomcat.member-1"]
    del services[TOMCAT]["clusterIdClusterMap"][TOMCAT2]
    services[TOMCAT]["properties"]["category"] = "server"
    services["mysql"] = {"serviceName": "mysql", "serviceType": "SingleTenant", "clusterIdClusterMap": {}}
    topology = TopologyModel()
    topology.handle(COMPLETE, original)
    php_member_1 = topology.member("php.member-1")

    changes = topology.handle(COMPLETE, json.dumps(data).encode())

    assert Counter(changes) == Counter([
        ServiceUpdated(TOMCAT),
        MemberRemoved(TOMCAT, TOMCAT2, "tomcat.member-3"),
        ClusterInstanceRemoved(TOMCAT, TOMCAT2, APP_INSTANCE),
        ClusterRemoved(TOMCAT, TOMCAT2),
        MemberRemoved(TOMCAT, TOMCAT1, "tomcat.member-1"),
        ClusterUpdated(PHP, PHP1),
        ClusterInstanceStatusChanged(PHP, PHP1, APP_INSTANCE, "Active", "Inactive"),
        MemberUpdated(PHP, PHP1, "php.member-1"),
        MemberStatusChanged(PHP, PHP1, "php.member-2", "Created", "Initialized"),
        MemberAdded(PHP, PHP1, "php.member-3"),
        MemberStatusChanged(PHP, PHP1, "php.member-3", None, "Created"),
        ServiceAdded("mysql"),
    ])
    assert len(changes) == 12
    # Within a service, parents come before children when added, after them when removed.
    assert changes.index(ClusterRemoved(TOMCAT, TOMCAT2)) > changes.index(MemberRemoved(TOMCAT, TOMCAT2,
                                                                                        "tomcat.member-3"))
    assert changes.index(MemberAdded(PHP, PHP1, "php.member-3")) < changes.index(
        MemberStatusChanged(PHP, PHP1, "php.member-3", None, "Created"))
    # The model follows the snapshot, and an entity keeps its object.
    assert topology.member("php.member-1") is php_member_1 and php_member_1.default_public_ip == "20.0.0.99"
    assert php_member_1.member_state_manager.state_stack[:2] == ["Created", "Created"]
    assert topology.member("tomcat.member-1") is None and topology.member("tomcat.member-3") is None
    assert topology.cluster(TOMCAT2) is None and topology.service("mysql").service_type == "SingleTenant"
    assert topology.service(TOMCAT).properties["category"] == "server"
    assert "www.example.org" in topology.cluster(PHP1).host_names


def test_the_services_view_is_read_only(model):
    with pytest.raises(TypeError):
        model.services["x"] = model.service(PHP)
