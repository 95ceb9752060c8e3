"""``${VAR}`` and ``${file:/path}`` references in a native file, and overrides of list entries."""

import os

import pytest

from pca_core import config
from pca_core.api.errors import ConfigErrors
from pca_core.api.secrets import Secret
from pca_core.runtime.plugins import select
from tests.support.configs import PAYLOAD as PAYLOAD_VALUES
from tests.support.configs import PAYLOAD_TOML as PAYLOAD
from tests.support.dists import run_pca

LAUNCH_PARAMS = ",".join(f"{key}={value}" for key, value in PAYLOAD_VALUES.items())


def write(directory, text, name="agent.toml"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def load(path, environ):
    loaded, warnings = config.load(path, environ=environ)
    assert warnings == []
    return loaded


def problems(path, environ):
    """Every error loading ``path`` gives, as (source, key, expected)."""
    with pytest.raises(ConfigErrors) as info:
        config.load(path, environ=environ)
    return [(e.source, e.key, e.expected) for e in info.value.errors]


PUBLISHER = """
[[publishers]]
plugin = "file"
streams = ["logs"]
options = { path = "/tmp/records.jsonl", password = "${PUB_PASSWORD}" }
"""


# ${VAR}


def test_a_variable_fills_values_anywhere_in_the_file(tmp_path):
    path = write(tmp_path, """
[transport]
urls = ["mqtt://agent:${URL_PASSWORD}@${MB_HOST}:1883"]
username = "${MB_USER}"
password = "${MB_PASSWORD}"
qos = "${MB_QOS}"
[agent]
workers = "${WORKERS}"
""" + PUBLISHER + """
[[event_handlers]]
plugin = "audit"
options = { target = "${AUDIT_TARGET}" }
""" + PAYLOAD + 'TOKEN = "${STRATOS_TOKEN}"\n')
    cfg = load(path, {"URL_PASSWORD": "u-pass", "MB_HOST": "broker", "MB_USER": "agent",
                      "MB_PASSWORD": "mb-pass", "MB_QOS": "0", "WORKERS": "8", "PUB_PASSWORD": "pub-pass",
                      "AUDIT_TARGET": "syslog", "STRATOS_TOKEN": "tok"})
    assert cfg.transport.urls == ("mqtt://agent:u-pass@broker:1883",)
    assert (cfg.transport.username, cfg.transport.password) == ("agent", Secret("mb-pass"))
    assert cfg.transport.qos == 0 and cfg.agent.workers == 8  # text where a number is expected, as always
    assert cfg.publishers[0].options["password"] == "pub-pass"
    assert cfg.event_handlers[0].options == {"target": "syslog"}
    assert cfg.payload["TOKEN"] == "tok"


def test_an_unset_variable_names_the_file_the_key_and_the_variable(tmp_path):
    path = write(tmp_path, PUBLISHER + PAYLOAD)
    assert problems(path, {}) == [(str(path), "publishers[0].options.password",
                                   "environment variable PUB_PASSWORD is not set "
                                   "(give a default with ${PUB_PASSWORD:-default})")]


def test_every_unset_variable_is_reported_at_once_without_follow_up_errors(tmp_path):
    path = write(tmp_path, '[agent]\nworkers = "${WORKERS}"\n[transport]\nurls = ["${MB_1}", "${MB_2}"]\n'
                 + PAYLOAD)
    found = problems(path, {"MB_1": "a:1883"})
    # workers keeps the unresolved "${WORKERS}", which is no int: that error is left out
    assert [(key, expected.split(" (")[0]) for _, key, expected in found] == [
        ("agent.workers", "environment variable WORKERS is not set"),
        ("transport.urls[1]", "environment variable MB_2 is not set"),
    ]


def test_a_default_is_used_when_the_variable_is_unset_or_empty(tmp_path):
    path = write(tmp_path, '[transport]\nusername = "${MB_USER:-agent}"\nclient_id = "${CLIENT:-}"\n'
                 'urls = ["${MB_HOST:-localhost}:1883"]\n' + PAYLOAD)
    cfg = load(path, {"MB_HOST": ""})
    assert (cfg.transport.username, cfg.transport.client_id, cfg.transport.urls) == ("agent", "",
                                                                                     ("localhost:1883",))
    cfg = load(path, {"MB_USER": "ops", "CLIENT": "c-1", "MB_HOST": "broker"})
    assert (cfg.transport.username, cfg.transport.client_id, cfg.transport.urls) == ("ops", "c-1",
                                                                                     ("broker:1883",))


def test_a_variable_set_but_empty_gives_empty_text(tmp_path):
    path = write(tmp_path, '[transport]\nusername = "${MB_USER}"\n' + PAYLOAD)
    assert load(path, {"MB_USER": ""}).transport.username == ""


def test_dollar_dollar_brace_is_a_literal_and_inserted_text_is_not_resolved_again(tmp_path):
    path = write(tmp_path, '[transport]\npassword = "pa$${X}ss"\nusername = "${MB_USER}"\n' + PAYLOAD)
    cfg = load(path, {"X": "never", "MB_USER": "${X}"})
    assert cfg.transport.password == Secret("pa${X}ss")
    assert cfg.transport.username == "${X}"


@pytest.mark.parametrize("value", ["pa${ss", "pa${s s}", "${1ST}", "pa${file:}ss", "${X:default}"])
def test_a_malformed_reference_is_an_error_that_does_not_quote_the_value(tmp_path, value):
    path = write(tmp_path, f'[transport]\npassword = "{value}"\n' + PAYLOAD)
    [(source, key, expected)] = problems(path, {"X": "x", "s": "x"})
    assert (source, key) == (str(path), "transport.password")
    assert "$${ stands for a literal ${" in expected
    assert value not in expected


# ${file:/path}


def test_a_file_reference_gives_the_content_less_one_trailing_newline(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mb").write_text("mb-pass\n")
    (secrets / "two-lines").write_text("line 1\nline 2\n\n")
    (secrets / "crlf").write_bytes(b"crlf-pass\r\n")
    (secrets / "bare").write_text("bare")
    path = write(tmp_path, f"""
[transport]
password = "${{file:{secrets / 'mb'}}}"
username = "${{file:{secrets / 'bare'}}}"
client_id = "${{file:{secrets / 'crlf'}}}"
""" + PUBLISHER.replace("${PUB_PASSWORD}", f"${{file:{secrets / 'two-lines'}}}") + PAYLOAD)
    cfg = load(path, {})
    assert cfg.transport.password == Secret("mb-pass")
    assert cfg.transport.username == "bare"
    assert cfg.transport.client_id == "crlf-pass"
    assert cfg.publishers[0].options["password"] == "line 1\nline 2\n"


def test_a_relative_file_reference_is_relative_to_the_config_files_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the file is
    write(tmp_path / "etc" / "secrets", "from-beside-the-config\n", name="mb")
    write(tmp_path / "secrets", "from-the-working-directory\n", name="mb")
    path = write(tmp_path / "etc", '[transport]\npassword = "${file:secrets/mb}"\n' + PAYLOAD)
    assert load(path, {}).transport.password == Secret("from-beside-the-config")


def test_a_file_that_cannot_be_read_names_the_key_and_the_file_not_its_content(tmp_path):
    (tmp_path / "latin1").write_bytes("t\xf6p-secret".encode("latin-1"))
    (tmp_path / "a-directory").mkdir()
    path = write(tmp_path, """
[transport]
password = "${file:missing}"
username = "${file:a-directory}"
client_id = "${file:latin1}"
""" + PAYLOAD)
    found = problems(path, {})
    assert found == [  # in the file's order
        (str(path), "transport.password", f"cannot read {tmp_path / 'missing'}: No such file or directory"),
        (str(path), "transport.username", f"cannot read {tmp_path / 'a-directory'}: Is a directory"),
        (str(path), "transport.client_id", f"cannot read {tmp_path / 'latin1'}: not UTF-8 text"),
    ]
    assert "p-secret" not in repr(found)


# Secrets stay masked, in the effective configuration and in errors


def test_a_substituted_password_is_masked_as_its_key_is(tmp_path):
    (tmp_path / "thrift").write_text("th-pass\n")
    path = write(tmp_path, """
[transport]
urls = ["mqtt://agent:${URL_PASSWORD}@broker:1883"]
username = "${MB_USER}"
password = "${MB_PASSWORD}"
[[publishers]]
plugin = "thrift"
options = { urls = ["cep:7711"], username = "admin", password = "${file:thrift}" }
""" + PAYLOAD + 'TOKEN = "${STRATOS_TOKEN}"\n')
    data = config.to_data(load(path, {"URL_PASSWORD": "u-pass", "MB_USER": "ops", "MB_PASSWORD": "mb-pass",
                                      "STRATOS_TOKEN": "tok-pass"}))
    text = repr(data)
    for secret in ("u-pass", "mb-pass", "th-pass", "tok-pass"):
        assert secret not in text
    assert data["transport"]["password"] == data["publishers"][0]["options"]["password"] == "***"
    assert data["transport"]["urls"] == ["mqtt://agent:***@broker:1883"]
    assert data["transport"]["username"] == "ops"  # not a secret by its key: shown


def test_an_error_about_a_substituted_value_never_quotes_it(tmp_path):
    environ = {"QOS": "qos-secret", "LISTEN_HOST": "host-secret", "PORTS": "ports-secret"}
    path = write(tmp_path, '[transport]\nqos = "${QOS}"\n' + PAYLOAD.replace('"8080"', '"${PORTS}"'))
    found = problems(path, environ)
    assert sorted(key for _, key, _ in found) == ["PORTS", "transport.qos"]
    assert (str(path), "transport.qos", "expected one of 0, 1, got '***'") in found
    # the section checks run once every value has its type: a file of its own
    listen = write(tmp_path, '[http]\nlisten = "${LISTEN_HOST}:nine"\n' + PAYLOAD, name="listen.toml")
    found += problems(listen, environ)
    assert [key for _, key, _ in found][-1] == "http.listen"
    for secret in environ.values():
        assert secret not in repr(found)


# Where references are not resolved


def test_a_value_an_override_replaces_is_not_resolved_and_an_override_is_taken_literally(tmp_path):
    path = write(tmp_path, '[transport]\npassword = "${UNSET}"\nurls = ["${ALSO_UNSET}"]\n' + PUBLISHER
                 + PAYLOAD)
    cfg = load(path, {"PCA_TRANSPORT__PASSWORD": "from-${X}", "PCA_TRANSPORT__URLS": "a:1883",
                      "PCA_PUBLISHERS__0__OPTIONS__PASSWORD": "pub", "X": "x"})
    assert cfg.transport.password == Secret("from-${X}")
    assert cfg.transport.urls == ("a:1883",)
    assert cfg.publishers[0].options["password"] == "pub"


def test_a_payload_file_is_read_literally_and_its_name_may_come_from_a_reference(tmp_path):
    write(tmp_path, "TOKEN=${STRATOS_TOKEN},CARTRIDGE_ALIAS=${X}", name="launch-params")
    path = write(tmp_path, '[agent]\npayload_file = "${PAYLOAD_FILE}"\n' + PAYLOAD)
    cfg = load(path, {"PAYLOAD_FILE": "launch-params", "STRATOS_TOKEN": "tok", "X": "x"})
    assert (cfg.payload["TOKEN"], cfg.payload["CARTRIDGE_ALIAS"]) == ("${STRATOS_TOKEN}", "${X}")
    assert problems(path, {}) == [(str(path), "agent.payload_file",
                                   "environment variable PAYLOAD_FILE is not set "
                                   "(give a default with ${PAYLOAD_FILE:-default})")]


def test_a_legacy_agent_conf_is_read_literally(tmp_path):
    write(tmp_path / "payload", LAUNCH_PARAMS, name="launch-params")
    conf = write(tmp_path, "[agent]\nmb.urls=localhost:1883\nmb.username=agent\nmb.password=${MB_PASSWORD}\n"
                 "thrift.receiver.urls=localhost:7711\nthrift.server.admin.username=admin\n"
                 "thrift.server.admin.password=admin\ncep.stats.publisher.enabled=false\n", name="agent.conf")
    cfg, _warnings = config.load(conf, environ={"MB_PASSWORD": "from-env"})
    assert cfg.transport.password == Secret("${MB_PASSWORD}")


# Overrides of list entries


def test_list_entries_are_overridden_by_index(tmp_path):
    path = write(tmp_path, PUBLISHER + '[[publishers]]\nplugin = "file"\noptions = { path = "/tmp/b" }\n'
                 '[[event_handlers]]\nplugin = "a"\n[[event_handlers]]\nplugin = "b"\n' + PAYLOAD)
    cfg = load(path, {"PUB_PASSWORD": "from-file-reference",
                      "PCA_PUBLISHERS__0__OPTIONS__PASSWORD": "from-override",
                      "PCA_PUBLISHERS__1__STREAMS": "logs, health",
                      "PCA_PUBLISHERS__1__BATCH_SIZE": "1000",
                      "PCA_PUBLISHERS__1__OPTIONS__FSYNC": "true",
                      "PCA_EVENT_HANDLERS__1__PLUGIN": "audit",
                      "PCA_EVENT_HANDLERS__0__OPTIONS__TARGET": "syslog"})
    first, second = cfg.publishers
    assert first.options == {"path": "/tmp/records.jsonl", "password": "from-override"}
    assert first.streams == ("logs",) and first.batch_size == 500
    assert (second.streams, second.batch_size) == (("logs", "health"), 1000)
    assert second.options == {"path": "/tmp/b", "fsync": "true"}
    assert [(h.plugin, h.options) for h in cfg.event_handlers] == [("a", {"target": "syslog"}), ("audit", {})]


def test_an_index_past_the_end_names_the_variable_and_the_number_of_entries(tmp_path):
    path = write(tmp_path, PUBLISHER + '[[publishers]]\nplugin = "file"\noptions = { path = "/tmp/b" }\n'
                 + PAYLOAD)
    found = problems(path, {"PUB_PASSWORD": "p", "PCA_PUBLISHERS__2__OPTIONS__PASSWORD": "x",
                            "PCA_EVENT_HANDLERS__0__PLUGIN": "audit"})
    assert found == [
        ("environment variable PCA_EVENT_HANDLERS__0__PLUGIN", "event_handlers[0]",
         "no such entry: event_handlers has no entries; an override changes an entry of the configuration, "
         "add new ones in the file"),
        ("environment variable PCA_PUBLISHERS__2__OPTIONS__PASSWORD", "publishers[2]",
         "no such entry: publishers has 2 entries (indexes 0 to 1); an override changes an entry of the "
         "configuration, add new ones in the file"),
    ]


@pytest.mark.parametrize(("name", "key", "expected"), [
    ("PCA_PUBLISHERS__OPTIONS__PASSWORD", "publishers", "an entry is named by its index, counted from 0: "
                                                        "PCA_PUBLISHERS__<INDEX>__<KEY>"),
    ("PCA_EVENT_HANDLERS__0", "event_handlers[0]", "a key of the entry is missing: "
                                                   "PCA_EVENT_HANDLERS__0__<KEY>"),
])
def test_a_list_override_without_an_index_or_a_key_is_an_error(tmp_path, name, key, expected):
    path = write(tmp_path, '[[event_handlers]]\nplugin = "a"\n' + PAYLOAD)
    assert problems(path, {name: "x"}) == [(f"environment variable {name}", key, expected)]


def test_a_bad_list_override_value_names_the_variable(tmp_path):
    path = write(tmp_path, PUBLISHER + PAYLOAD)
    found = problems(path, {"PUB_PASSWORD": "p", "PCA_PUBLISHERS__0__BATCH_SIZE": "many",
                            "PCA_PUBLISHERS__0__BATCH_SIZ": "1"})
    assert sorted((source, key) for source, key, _ in found) == [
        ("environment variable PCA_PUBLISHERS__0__BATCH_SIZ", "publishers[0].batch_siz"),
        ("environment variable PCA_PUBLISHERS__0__BATCH_SIZE", "publishers[0].batch_size"),
    ]


def test_a_bad_plugin_option_from_a_list_override_names_the_variable(tmp_path):
    path = write(tmp_path, '[transport]\nplugin = "memory"\n'
                 + PUBLISHER.replace(', password = "${PUB_PASSWORD}"', "") + PAYLOAD)
    environ = {"PCA_PUBLISHERS__0__OPTIONS__FSYNC": "maybe"}
    cfg = load(path, environ)
    with pytest.raises(ConfigErrors) as info:
        select(cfg, str(path), environ)
    assert [(e.source, e.key) for e in info.value.errors] == [
        ("environment variable PCA_PUBLISHERS__0__OPTIONS__FSYNC", "publishers[0].options.fsync")]


def test_a_legacy_files_publishers_are_overridden_by_index_too(tmp_path):
    write(tmp_path / "payload", LAUNCH_PARAMS, name="launch-params")
    conf = write(tmp_path, "[agent]\nmb.urls=localhost:1883\nthrift.receiver.urls=localhost:7711\n"
                 "thrift.server.admin.username=admin\nthrift.server.admin.password=admin\n"
                 "cep.stats.publisher.enabled=true\n", name="agent.conf")
    cfg, _warnings = config.load(conf, environ={"PCA_PUBLISHERS__0__OPTIONS__PASSWORD": "rotated"})
    assert cfg.publishers[0].options["password"] == "rotated"


# pca config check


def test_config_check_masks_a_substituted_password(tmp_path):
    (tmp_path / "thrift-password").write_text("th-Pa55\n")
    path = write(tmp_path, """
[transport]
plugin = "memory"
password = "${MB_PASSWORD}"
[[publishers]]
plugin = "thrift"
options = { urls = ["localhost:7711"], username = "admin", password = "${file:thrift-password}" }
""" + PAYLOAD)
    result = run_pca("config", "check", "--config", str(path), env={**os.environ, "MB_PASSWORD": "mb-Pa55"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('password = "***"') == 2
    assert "mb-Pa55" not in result.stdout + result.stderr and "th-Pa55" not in result.stdout + result.stderr


def test_config_check_names_an_unset_variable(tmp_path):
    path = write(tmp_path, '[transport]\nplugin = "memory"\npassword = "${MB_PASSWORD}"\n' + PAYLOAD)
    env = {k: v for k, v in os.environ.items() if k != "MB_PASSWORD"}
    result = run_pca("config", "check", "--config", str(path), env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"pca: error: {path}: transport.password: environment variable "
                                     "MB_PASSWORD is not set (give a default with ${MB_PASSWORD:-default})")
