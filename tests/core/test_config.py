import pytest

from pca_core import config
from pca_core.api.errors import ConfigError
from pca_core.api.secrets import Secret

PAYLOAD = """
[payload]
APPLICATION_ID = "app"
SERVICE_NAME = "php"
CLUSTER_ID = "php.domain"
PORTS = "8080|8443"
MULTITENANT = false
TENANT_ID = "-1234"
MEMBER_ID = "php.member-1"
"""


def write(tmp_path, text, name="agent.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path, environ=None, payload=None):
    loaded, warnings = config.load(path, payload, environ=environ or {})
    assert warnings == []
    return loaded


def test_defaults_and_plugins_by_name(tmp_path):
    path = write(tmp_path, """
[transport]
plugin = "amqp"
urls = ["amqps://broker-1:5671", "amqps://broker-2:5671"]
username = "agent"
password = "s3cret"
[transport.options]
container_id = "x"
[[publishers]]
plugin = "file"
streams = ["health"]
options = { path = "/tmp/records.jsonl" }
""" + PAYLOAD)
    cfg = load(path)
    assert cfg.transport.plugin == "amqp"
    assert cfg.transport.urls == ("amqps://broker-1:5671", "amqps://broker-2:5671")
    assert cfg.transport.password == Secret("s3cret")
    assert cfg.transport.options == {"container_id": "x"}
    assert cfg.publishers[0].plugin == "file" and cfg.publishers[0].streams == ("health",)
    assert cfg.agent.shutdown_timeout == 10.0
    assert cfg.identity.ports == (8080, 8443)
    assert cfg.identity.multitenant is False
    assert cfg.identity.tenant_id == "-1234"


def test_unknown_key_is_an_error_naming_file_key_and_known_keys(tmp_path):
    path = write(tmp_path, "[transport]\nplugn = \"mqtt\"\n" + PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.source == str(path)
    assert info.value.key == "transport.plugn"
    assert "unknown key" in info.value.expected and "plugin" in info.value.expected


def test_unknown_section_is_an_error(tmp_path):
    path = write(tmp_path, "[transprt]\nplugin = \"mqtt\"\n" + PAYLOAD)
    with pytest.raises(ConfigError, match="transprt: unknown key"):
        load(path)


def test_wrong_type_names_the_key_and_the_expected_type(tmp_path):
    path = write(tmp_path, "[agent]\nshutdown_timeout = \"soon\"\n" + PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.key, info.value.expected) == ("agent.shutdown_timeout", "expected float, got str")
    assert str(path) in str(info.value)


def test_a_log_poll_interval_that_cannot_work_names_the_key(tmp_path):
    path = write(tmp_path, "[logs]\npoll_interval = 0\n" + PAYLOAD)
    with pytest.raises(ConfigError, match=r"logs\.poll_interval: seconds, more than 0; got 0"):
        load(path)


def test_a_list_element_of_the_wrong_type_is_located(tmp_path):
    path = write(tmp_path, "[transport]\nurls = [\"a:1\", 2]\n" + PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "transport.urls[1]"


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[transport\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path / "absent.toml")


def test_missing_mandatory_payload_key(tmp_path):
    path = write(tmp_path, PAYLOAD.replace('SERVICE_NAME = "php"\n', ""))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.source, info.value.key) == (str(path), "SERVICE_NAME")
    assert "mandatory" in info.value.expected


def test_bad_ports_are_refused(tmp_path):
    path = write(tmp_path, PAYLOAD.replace("8080|8443", "8080|http"))
    with pytest.raises(ConfigError, match="PORTS: expected '\\|'-separated TCP ports"):
        load(path)


def test_repo_url_needs_a_cartridge_key(tmp_path):
    path = write(tmp_path, PAYLOAD + 'REPO_URL = "https://git.example/app.git"\n')
    with pytest.raises(ConfigError, match="CARTRIDGE_KEY: missing; mandatory when REPO_URL"):
        load(path)


def test_environment_overrides_file_values(tmp_path):
    path = write(tmp_path, '[transport]\nurls = ["a:1883"]\n' + PAYLOAD)
    cfg = load(path, environ={
        "PCA_TRANSPORT__URLS": "h1:1883, h2:1883",
        "PCA_TRANSPORT__PASSWORD": "from-env",
        "PCA_TRANSPORT__TLS__CA_FILE": "/etc/pca/ca.pem",
        "PCA_TRANSPORT__OPTIONS__KEEPALIVE": "30",
        "PCA_AGENT__SHUTDOWN_TIMEOUT": "3.5",
        "PCA_HEALTH__ENABLED": "false",
        "PCA_PAYLOAD__MEMBER_ID": "php.member-7",
        "PCA_HOME": "/ignored: not a PCA_<SECTION>__<KEY> name",
    })
    assert cfg.transport.urls == ("h1:1883", "h2:1883")
    assert cfg.transport.password == Secret("from-env")
    assert cfg.transport.tls is not None and cfg.transport.tls.ca_file == "/etc/pca/ca.pem"
    assert cfg.transport.tls.verify is True
    assert cfg.transport.options == {"keepalive": "30"}
    assert cfg.agent.shutdown_timeout == 3.5
    assert cfg.health.enabled is False
    assert cfg.identity.member_id == "php.member-7"


def test_a_bad_environment_value_names_the_variable(tmp_path):
    path = write(tmp_path, PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"PCA_AGENT__WORKERS": "many"})
    assert info.value.source == "environment variable PCA_AGENT__WORKERS"
    assert info.value.key == "agent.workers"


def test_an_unknown_environment_key_is_an_error(tmp_path):
    path = write(tmp_path, PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"PCA_TRANSPORT__URL": "x:1"})
    assert info.value.source == "environment variable PCA_TRANSPORT__URL"
    with pytest.raises(ConfigError, match="unknown section"):
        load(path, environ={"PCA_TRANSPROT__URLS": "x:1"})


def test_an_environment_payload_value_that_is_bad_names_the_variable(tmp_path):
    path = write(tmp_path, PAYLOAD)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"PCA_PAYLOAD__PORTS": "eighty"})
    assert info.value.source == "environment variable PCA_PAYLOAD__PORTS"


def test_payload_file_overrides_the_payload_table(tmp_path):
    (tmp_path / "launch-params").write_text("MEMBER_ID=m-9,PORTS=9090,JUNK,BASH_LINENO=([0]=\"0\")")
    path = write(tmp_path, '[agent]\npayload_file = "launch-params"\n' + PAYLOAD)
    cfg = load(path)
    assert cfg.identity.member_id == "m-9"
    assert cfg.identity.ports == (9090,)
    assert cfg.payload["BASH_LINENO"] == '([0]="0")'


def test_display_masks_every_secret(tmp_path):
    path = write(tmp_path, """
[transport]
urls = ["mqtt://agent:url-pass@broker:1883"]
password = "transport-pass"
[[publishers]]
plugin = "thrift"
options = { password = "thrift-pass", urls = ["localhost:7711"] }
""" + PAYLOAD + 'CARTRIDGE_KEY = "key-pass"\nTOKEN = "token-pass"\nAWS_SECRET_ACCESS_KEY = "aws-pass"\n'
        + 'REPO_URL = "https://user:repo-pass@git.example/app.git"\n')
    text = repr(config.to_data(load(path)))
    for secret in ("url-pass", "transport-pass", "thrift-pass", "key-pass", "token-pass", "aws-pass",
                   "repo-pass"):
        assert secret not in text
    assert "mqtt://agent:***@broker:1883" in text
    assert "'localhost:7711'" in text


def test_secrets_do_not_print_themselves():
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r}"
    assert secret.reveal() == "hunter2"
