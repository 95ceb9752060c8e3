"""The legacy agent.conf and launch-params, with the meanings of the original agent."""

import shutil
from pathlib import Path

import pytest

from pca_core import config
from pca_core.api.errors import ConfigError
from pca_core.api.secrets import Secret

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy"

MINIMAL_CONF = """[agent]
mb.urls=localhost:1883
thrift.receiver.urls=localhost:7711
thrift.server.admin.username=admin
thrift.server.admin.password=admin
cep.stats.publisher.enabled=false
"""
MINIMAL_PAYLOAD = ("APPLICATION_ID=app,SERVICE_NAME=php,CLUSTER_ID=php.domain,PORTS=8080,MULTITENANT=false,"
                   "TENANT_ID=-1234,MEMBER_ID=php.member-1")


@pytest.fixture
def home(tmp_path):
    """A PCA_HOME with a minimal agent.conf and payload; tests rewrite them."""
    (tmp_path / "payload").mkdir()
    (tmp_path / "agent.conf").write_text(MINIMAL_CONF)
    (tmp_path / "payload" / "launch-params").write_text(MINIMAL_PAYLOAD)
    return tmp_path


def load(home, conf=None, payload=None, environ=None):
    if conf is not None:
        (home / "agent.conf").write_text(conf)
    if payload is not None:
        (home / "payload" / "launch-params").write_text(payload)
    return config.load(home / "agent.conf", environ=environ or {})


def test_the_original_distributions_files_load_with_their_meanings():
    cfg, warnings = config.load(EXAMPLE / "agent.conf", environ={})
    assert warnings == []
    assert cfg.transport.plugin == "mqtt"
    assert cfg.transport.urls == ("localhost:1883",)
    assert (cfg.transport.username, cfg.transport.password) == ("system", Secret("manager"))
    assert cfg.agent.listen_address == "localhost"
    assert cfg.agent.port_check_timeout == 600.0  # 600000 ms
    assert cfg.agent.application_path == "/var/www"
    assert cfg.agent.metadata_service_url is None  # "null" means unset
    assert cfg.agent.lb_private_ip is None  # empty means unset
    assert cfg.agent.extensions_dir == str(EXAMPLE / "extensions" / "bash")
    assert cfg.health.enabled is True and cfg.health.interval == 15
    assert [(p.plugin, p.streams) for p in cfg.publishers] == [("thrift", ("health",))]
    assert cfg.publishers[0].options == {"urls": ["localhost:7711"], "username": "admin", "password": "admin"}
    assert cfg.logs.enabled is False and cfg.logs.paths == ()
    a = cfg.artifacts
    assert (a.enable_update, a.auto_checkout, a.auto_commit) == (True, True, False)
    assert (a.update_interval, a.clone_retries, a.clone_interval) == (15, 5, 10)
    assert a.super_tenant_repository_path == "/repository/deployment/server/"
    assert a.tenant_repository_path == "/repository/tenants/"
    ident = cfg.identity
    assert (ident.application_id, ident.service_name, ident.cluster_id) == ("application-1", "php",
                                                                           "php.php.domain")
    assert (ident.member_id, ident.instance_id, ident.cluster_instance_id) == ("php.member-1", "instance-1",
                                                                              "cluster-1-instance-1")
    assert (ident.tenant_id, ident.multitenant, ident.ports) == ("-1234", False, (8080,))
    assert ident.lvs_virtual_ip == "192.168.0.40|255.255.255.0"
    assert ident.token == Secret("eyJhbGciOiJSUzI1NiJ9.c2VjcmV0==")  # '=' inside a value is kept
    assert "PUPPET_IP" not in cfg.payload  # null means unset
    assert cfg.payload["LOG_LEVEL"] == "DEBUG"  # junk before it (BASH_LINENO, IFS) did not stop the parser


def test_keys_are_case_insensitive_in_agent_conf(home):
    cfg, _ = load(home, MINIMAL_CONF.replace("mb.urls", "MB.URLS") + "Listen.Address=10.0.0.5\n")
    assert cfg.transport.urls == ("localhost:1883",)
    assert cfg.agent.listen_address == "10.0.0.5"


def test_mb_ip_and_port_are_the_fallback_for_an_empty_mb_urls(home):
    conf = MINIMAL_CONF.replace("mb.urls=localhost:1883", "mb.urls=\nmb.ip=broker\nmb.port=1885")
    cfg, _ = load(home, conf)
    assert cfg.transport.urls == ("broker:1885",)


def test_no_broker_at_all_is_an_error(home):
    with pytest.raises(ConfigError) as info:
        load(home, MINIMAL_CONF.replace("mb.urls=localhost:1883", "mb.urls=null"))
    assert (info.value.source, info.value.key) == (str(home / "agent.conf"), "mb.urls")
    assert "mb.ip and mb.port" in info.value.expected


def test_an_unreplaced_placeholder_is_named_as_such(home):
    with pytest.raises(ConfigError) as info:
        load(home, MINIMAL_CONF.replace("mb.urls=localhost:1883", "mb.urls=MB-URLS"))
    assert info.value.source == str(home / "agent.conf")
    assert info.value.key == "mb.urls"
    assert "host:port" in info.value.expected
    assert "unreplaced template placeholder" in info.value.expected


@pytest.mark.parametrize("key", ["mb.publisher.timeout", "artifact.update.interval", "artifact.clone.retries",
                                 "artifact.clone.interval", "port.check.timeout"])
def test_integer_keys_are_validated(home, key):
    with pytest.raises(ConfigError) as info:
        load(home, MINIMAL_CONF + f"{key}=ten\n")
    assert (info.value.key, info.value.expected) == (key, "expected a whole number, got 'ten'")


def test_a_credential_in_a_bad_url_is_masked_in_the_error(home):
    with pytest.raises(ConfigError) as info:
        load(home, MINIMAL_CONF.replace("mb.urls=localhost:1883", "mb.urls=mqtt://u:Pa55@host:1883,nohost"))
    assert "Pa55" not in str(info.value)
    assert "mqtt://u:***@host:1883" in str(info.value)


def test_thrift_receiver_urls_are_validated_as_a_url_list(home):
    with pytest.raises(ConfigError, match=r"thrift.receiver.urls: expected a comma-separated list"):
        load(home, MINIMAL_CONF.replace("localhost:7711", "localhost"))


@pytest.mark.parametrize("key", ["thrift.receiver.urls", "thrift.server.admin.username",
                                 "thrift.server.admin.password", "cep.stats.publisher.enabled"])
def test_mandatory_agent_keys(home, key):
    conf = "\n".join(line for line in MINIMAL_CONF.splitlines() if not line.startswith(key + "="))
    with pytest.raises(ConfigError) as info:
        load(home, conf)
    assert info.value.key == key and "missing" in info.value.expected
    assert info.value.source == str(home / "agent.conf")


@pytest.mark.parametrize("key", ["APPLICATION_ID", "SERVICE_NAME", "CLUSTER_ID", "PORTS", "MULTITENANT",
                                 "TENANT_ID", "MEMBER_ID"])
def test_mandatory_payload_keys_name_the_payload_file(home, key):
    payload = ",".join(p for p in MINIMAL_PAYLOAD.split(",") if not p.startswith(key + "="))
    with pytest.raises(ConfigError) as info:
        load(home, payload=payload)
    assert (info.value.source, info.value.key) == (str(home / "payload" / "launch-params"), key)


def test_any_agent_key_may_come_from_the_payload_and_agent_conf_wins(home):
    conf = MINIMAL_CONF.replace("mb.urls=localhost:1883\n", "")
    cfg, _ = load(home, conf, MINIMAL_PAYLOAD + ",mb.urls=payload-broker:1883")
    assert cfg.transport.urls == ("payload-broker:1883",)
    cfg, _ = load(home, MINIMAL_CONF + "SERVICE_NAME=from-conf\n")
    assert cfg.identity.service_name == "from-conf"


def test_payload_keys_are_case_sensitive(home):
    conf = MINIMAL_CONF.replace("mb.urls=localhost:1883\n", "")
    with pytest.raises(ConfigError, match=r"mb.urls"):
        load(home, conf, MINIMAL_PAYLOAD + ",MB_IP=broker,MB_PORT=1883")


def test_commit_enabled_in_the_payload_wins_over_auto_commit(home):
    cfg, _ = load(home, MINIMAL_CONF + "auto.commit=false\n", MINIMAL_PAYLOAD + ",COMMIT_ENABLED=true")
    assert cfg.artifacts.auto_commit is True
    cfg, _ = load(home, MINIMAL_CONF + "auto.commit=true\n", MINIMAL_PAYLOAD)
    assert cfg.artifacts.auto_commit is True  # the original ignored it; pca honours it


def test_a_boolean_key_with_another_value_is_an_error(home):
    with pytest.raises(ConfigError, match=r"auto.checkout: expected true or false, got 'yes'"):
        load(home, MINIMAL_CONF + "auto.checkout=yes\n")


def test_data_publishing_needs_the_monitoring_server(home):
    with pytest.raises(ConfigError, match=r"monitoring.server.ip: missing"):
        load(home, MINIMAL_CONF + "enable.data.publisher=true\n")
    cfg, _ = load(home, MINIMAL_CONF + "enable.data.publisher=true\nmonitoring.server.ip=cep\n"
                  "monitoring.server.port=7611\nmonitoring.server.secure.port=7711\n"
                  "monitoring.server.admin.username=u\nmonitoring.server.admin.password=p\n"
                  "log.file.paths=/var/log/a.log|/var/log/b.log\n")
    assert cfg.logs.paths == ("/var/log/a.log", "/var/log/b.log")
    assert cfg.publishers[0].streams == ("logs",)
    assert cfg.publishers[0].options["urls"] == ["cep:7711"]


MONITORING = ("enable.data.publisher=true\nmonitoring.server.ip=cep\nmonitoring.server.port=7611\n"
              "monitoring.server.secure.port=7711\nmonitoring.server.admin.username=u\n"
              "monitoring.server.admin.password=p\n")


def test_thrift_tls_keys_reach_both_thrift_publishers(home):
    conf = MINIMAL_CONF.replace("cep.stats.publisher.enabled=false", "cep.stats.publisher.enabled=true")
    tls = "thrift.tls.ca.file=/etc/pca/cep-ca.pem\nthrift.tls.verify=false\n"
    cfg, warnings = load(home, conf + MONITORING + tls)
    assert warnings == []
    assert [p.streams for p in cfg.publishers] == [("health",), ("logs",)]
    for publisher in cfg.publishers:
        assert publisher.options["ca_file"] == "/etc/pca/cep-ca.pem" and publisher.options["verify"] is False


def test_without_pca_thrift_a_legacy_file_warns_and_runs_without_thrift_publishers(home, monkeypatch):
    # The installation is what is missing here: the check for it sees no thrift log publisher.
    monkeypatch.setattr("pca_core.config.legacy.installed_names", lambda group: [])
    conf = MINIMAL_CONF.replace("cep.stats.publisher.enabled=false", "cep.stats.publisher.enabled=true")
    cfg, warnings = load(home, conf + MONITORING)
    assert cfg.publishers == ()
    conf_file = home / "agent.conf"
    assert warnings == [
        f"{conf_file}: cep.stats.publisher.enabled: health statistics are not sent: the thrift log publisher "
        f"is not installed (pip install pca-thrift)",
        f"{conf_file}: enable.data.publisher: log lines are not sent: the thrift log publisher is not "
        f"installed (pip install pca-thrift)"]


def test_messaging_transport_selects_another_transport(home):
    cfg, _ = load(home, MINIMAL_CONF + "messaging.transport=amqp\n")
    assert cfg.transport.plugin == "amqp"


def test_unknown_keys_are_warnings_not_errors(home):
    _, warnings = load(home, MINIMAL_CONF + "mb.retry.forever=true\n")
    assert warnings == [f"{home / 'agent.conf'}: mb.retry.forever: unknown key, ignored"]


def test_the_state_dir_defaults_to_one_under_pca_home(home):
    cfg, _ = load(home)
    assert cfg.agent.state_dir == str(home.resolve() / "state")
    cfg, _ = load(home, environ={"PCA_AGENT__STATE_DIR": "/srv/pca-state"})
    assert cfg.agent.state_dir == "/srv/pca-state"


def test_environment_overrides_a_legacy_file_too(home):
    cfg, _ = load(home, environ={"PCA_TRANSPORT__URLS": "other:1883"})
    assert cfg.transport.urls == ("other:1883",)


def test_a_file_without_an_agent_section(home):
    with pytest.raises(ConfigError, match=r"\[agent\]: missing section"):
        load(home, "[other]\nmb.urls=x:1\n")


def test_percent_signs_in_passwords_are_kept(home):
    cfg, _ = load(home, MINIMAL_CONF + "mb.username=u\nmb.password=50%off\n")
    assert cfg.transport.password == Secret("50%off")


def test_an_explicit_payload_path(tmp_path):
    shutil.copy(EXAMPLE / "agent.conf", tmp_path / "agent.conf")
    (tmp_path / "params").write_text(MINIMAL_PAYLOAD + ",MEMBER_ID=m-2")
    cfg, _ = config.load(tmp_path / "agent.conf", tmp_path / "params", environ={})
    assert cfg.identity.member_id == "m-2"
    assert cfg.agent.payload_file == str(tmp_path / "params")
