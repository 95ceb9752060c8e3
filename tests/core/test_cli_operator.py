"""The operator's commands: ``pca --version``, ``pca plugins --config``, ``pca config check --connect`` and
``pca config init``, run in subprocesses as an operator runs them, against real servers on loopback."""

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest

from pca_core import __version__, config
from pca_core.cli.key_help import KEYS
from pca_core.cli.versions import library_versions
from pca_core.config.schema import Config
from tests.support.configs import PAYLOAD_TOML
from tests.support.databridge import DatabridgeReceiver
from tests.support.dists import MISSING_PUBLISHER, missing_shipped_env, run_pca
from tests.support.forward import ForwardReceiver
from tests.support.gitserver import GitDaemon, HttpGitServer, Upstream
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_LIBRARIES = ("paho", "proton", "kafka", "fluent", "thrift", "dulwich", "redis", "stevedore", "msgpack",
                    "prometheus_client", "pca_mqtt", "pca_amqp", "pca_kafka", "pca_fluentd", "pca_thrift",
                    "pca_git", "pca_redis")


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


# --- pca --version --------------------------------------------------------------------------------------


def test_version_lists_core_plugin_api_plugin_distributions_and_libraries_importing_none():
    code = ("import sys\nfrom pca_core.cli.main import main\ntry:\n    main(['--version'])\n"
            "except SystemExit:\n    pass\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {CLIENT_LIBRARIES!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == f"pca {__version__}"
    assert "plugin API 2.0" in lines
    assert lines[-1] == "[]"  # nothing imported: versions come from the distributions' metadata
    plugins = lines[lines.index("plugins:") + 1:lines.index("libraries:")]
    rows = {line.split()[0]: line.split(None, 2) for line in plugins}
    assert rows["pca-core"][1:] == [__version__, "transport memory, log publisher file"]
    assert rows["pca-mqtt"][1:] == [importlib.metadata.version("pca-mqtt"), "transport mqtt"]
    assert rows["pca-git"][2] == "artifact repository git"
    libraries = lines[lines.index("libraries:") + 1:-1]
    for name in ("stevedore", "msgspec", "paho-mqtt", "python-qpid-proton", "kafka-python", "dulwich",
                 "thrift", "fluent-logger", "msgpack", "prometheus-client"):
        assert f"  {name} {importlib.metadata.version(name)}" in libraries


def test_version_shows_a_third_party_plugin_distribution_without_importing_it(site, tmp_path):
    dist = site.dist("pca-marked", {"pca.log_publishers": {"marked": "marked_sink:Sink"}}, version="4.5.6")
    dist.add_module("marked_sink", "import os\nopen(os.environ['IMPORT_MARKER'], 'w').close()\n")
    dist.install()
    marker = tmp_path / "imported"
    result = run_pca("--version", env={**site.env, "IMPORT_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    row = re.search(r"^  pca-marked 4\.5\.6 +log publisher marked$", result.stdout, re.MULTILINE)
    assert row, result.stdout
    assert not marker.exists()


def test_only_installed_libraries_are_listed():
    assert library_versions(("msgspec", "no-such-distribution-pca-test")) == [
        ("msgspec", importlib.metadata.version("msgspec"))]


# --- pca plugins --config -------------------------------------------------------------------------------


def test_plugins_with_a_config_whose_plugins_load_exits_0(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[transport]\nplugin = "memory"\n[[publishers]]\nplugin = "file"\n'
                    f'options = {{ path = "{tmp_path}/records.jsonl" }}\n' + PAYLOAD_TOML)
    result = run_pca("plugins", "--config", str(path))
    assert result.returncode == 0, result.stderr
    selected = result.stdout.split(f"selected by {path}:\n")[1].splitlines()
    assert [line.split() for line in selected] == [["transport", "memory", "ok"],
                                                   ["publishers[0]", "file", "ok"]]


def test_plugins_with_a_config_selecting_a_missing_plugin_exits_1_with_the_install_hint(tmp_path):
    name, dist = MISSING_PUBLISHER
    path = tmp_path / "agent.toml"
    path.write_text(f'[transport]\nplugin = "memory"\n[[publishers]]\nplugin = "{name}"\n' + PAYLOAD_TOML)
    result = run_pca("plugins", "--config", str(path), env=missing_shipped_env(tmp_path / "site"))
    assert result.returncode == 1
    assert "pca.transports       memory" in result.stdout  # the listing comes first, whole
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("publishers[0]"))
    assert f"error: no log publisher plugin named {name!r} is installed" in line
    assert f"install it with: pip install {dist}" in line
    assert result.stderr.strip() == (f"pca: error: {path}: 1 selected plugin cannot be loaded: "
                                     f"publishers[0] ({name})")
    _no_traceback(result)


def test_plugins_with_a_config_selecting_a_broken_plugin_exits_1_saying_why(site, tmp_path):
    dist = site.dist("pca-broken", {"pca.transports": {"broken": "broken_transport:Broken"}}, version="0.2")
    dist.add_module("broken_transport", "raise ImportError(\"No module named 'libbroken'\")\n")
    dist.install()
    path = tmp_path / "agent.toml"
    path.write_text('[transport]\nplugin = "broken"\n' + PAYLOAD_TOML)
    result = run_pca("plugins", "--json", "--config", str(path), env=site.env)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["pca_core"] == __version__ and document["plugin_api"] == "2.0"
    assert document["config"] == str(path)
    (transport,) = document["selected"]
    assert transport["key"] == "transport" and transport["name"] == "broken" and transport["loads"] is False
    assert "(pca-broken 0.2) failed to load" in transport["error"]
    assert "No module named 'libbroken'" in transport["error"]
    listed = next(row for row in document["plugins"] if row["name"] == "broken")
    assert listed["loads"] is False and listed["distribution"] == "pca-broken"
    assert "cannot be loaded: transport (broken)" in result.stderr
    _no_traceback(result)


def test_plugins_json_without_a_config_is_one_document():
    result = run_pca("plugins", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert "selected" not in document
    assert {"group": "pca.transports", "name": "memory", "distribution": "pca-core", "version": __version__,
            "loads": True, "error": None} in document["plugins"]


# --- pca config check --connect -------------------------------------------------------------------------


def _mqtt_config(path: Path, *urls: str, extra: str = "", payload: str = PAYLOAD_TOML) -> Path:
    listed = ", ".join(f'"{url}"' for url in urls)
    path.write_text(f'[transport]\nplugin = "mqtt"\nurls = [{listed}]\nconnect_timeout = 5\n{extra}'
                    + payload)
    return path


def _connect(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = run_pca("config", "check", "--connect", "--config", str(path), env=env)
    _no_traceback(result)
    return result


def test_connect_to_a_running_broker_is_ok(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        result = _connect(_mqtt_config(tmp_path / "agent.toml", broker.url))
        assert broker.connect_attempts() == 1
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"transport (mqtt) {broker.url}: ok\n"


def test_connect_to_a_stopped_broker_fails_saying_why_and_exits_1(tmp_path):
    broker = Mosquitto(tmp_path / "broker")  # never started: nobody listens on its port
    result = _connect(_mqtt_config(tmp_path / "agent.toml", broker.url))
    assert result.returncode == 1
    assert result.stdout.startswith(f"transport (mqtt) {broker.url}: failed: ")
    assert "connection refused" in result.stdout.lower()
    assert result.stderr.splitlines()[-1] == f"pca: error: {tmp_path / 'agent.toml'}: 1 of the targets failed"


def test_connect_tries_every_broker_of_the_list(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        result = _connect(_mqtt_config(tmp_path / "agent.toml", broker.url, broker.dead_url))
    assert result.returncode == 1
    first, second = result.stdout.splitlines()
    assert first == f"transport (mqtt) {broker.url}: ok"
    assert second.startswith(f"transport (mqtt) {broker.dead_url}: failed: ")


def test_connect_with_refused_credentials_fails_without_showing_the_password(tmp_path):
    with Mosquitto(tmp_path / "broker", users={"agent": "right-Pa55"}) as broker:
        good = _connect(_mqtt_config(tmp_path / "good.toml", broker.url,
                                     extra='username = "agent"\npassword = "right-Pa55"\n'))
        bad = _connect(_mqtt_config(tmp_path / "bad.toml", broker.url,
                                    extra='username = "agent"\npassword = "wrong-Pa55"\n'))
    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode == 1
    assert "refused the credentials" in bad.stdout
    for result in (good, bad):
        assert "Pa55" not in result.stdout + result.stderr


def test_connect_keeps_a_running_agents_connection(tmp_path):
    # The check connects with a client id of its own: a broker drops the older of two equal ids.
    from pca_core.runtime.plugins import select

    with Mosquitto(tmp_path / "broker") as broker:
        path = _mqtt_config(tmp_path / "agent.toml", broker.url)
        loaded, _ = config.load(path)
        (chosen,) = select(loaded, str(path))
        agent = chosen.cls(chosen.config, chosen.options)
        agent.connect(timeout=10)
        try:
            assert _connect(path).returncode == 0
            assert "pca-php.member-1" in broker.log() and "already connected" not in broker.log()
            assert agent.state.value == "connected"
        finally:
            agent.close(5)


@pytest.fixture
def served(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    return served


def _repo_payload(url: str, branch: str | None = None) -> str:
    artifacts = f'[artifacts]\nbranch = "{branch}"\n' if branch else ""
    return (f'[agent]\napplication_path = "/tmp/pca-never-written"\n{artifacts}' + PAYLOAD_TOML
            + f'REPO_URL = "{url}"\nCARTRIDGE_KEY = "tvnw63ufg9gh5111"\n')


def test_connect_reads_the_git_remote_of_the_payload(tmp_path, served):
    upstream = Upstream(served, "app.git", {"index.php": "v1"})
    with GitDaemon(served) as daemon:
        (tmp_path / "agent.toml").write_text('[transport]\nplugin = "memory"\n'
                                             + _repo_payload(daemon.url("app.git")))
        ok = _connect(tmp_path / "agent.toml")
        (tmp_path / "branch.toml").write_text('[transport]\nplugin = "memory"\n'
                                              + _repo_payload(daemon.url("app.git"), "release"))
        no_branch = _connect(tmp_path / "branch.toml")
        (tmp_path / "missing.toml").write_text('[transport]\nplugin = "memory"\n'
                                               + _repo_payload(daemon.url("other.git")))
        missing = _connect(tmp_path / "missing.toml")
    stopped = _connect(tmp_path / "agent.toml")
    assert not Path("/tmp/pca-never-written").exists()  # nothing was checked out
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines() == [
        "transport (memory): ok",
        f"artifacts (git) {daemon.url('app.git')}: ok: branch main at {upstream.revision()[:12]}"]
    for result, reason in ((no_branch, "the remote has no branch release"), (missing, "failed: "),
                           (stopped, "Connection refused")):
        assert result.returncode == 1
        line = result.stdout.splitlines()[1]
        assert line.startswith("artifacts (git) ") and ": failed: " in line and reason in line, line


def test_connect_to_a_git_remote_over_http_keeps_its_password_out(tmp_path, served):
    Upstream(served, "app.git", {"index.php": "v1"})
    with HttpGitServer(served, "deploy", "git-Pa55") as server:
        url = server.url("app.git").replace("http://", "http://deploy:git-Pa55@")
        (tmp_path / "agent.toml").write_text('[transport]\nplugin = "memory"\n' + _repo_payload(url))
        ok = _connect(tmp_path / "agent.toml")
        wrong = url.replace("git-Pa55", "bad-Pa55")
        (tmp_path / "wrong.toml").write_text('[transport]\nplugin = "memory"\n' + _repo_payload(wrong))
        refused = _connect(tmp_path / "wrong.toml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"artifacts (git) http://deploy@127.0.0.1:{server.port}/app.git: ok: branch main at" in ok.stdout
    assert refused.returncode == 1 and "credentials were refused" in refused.stdout
    for result in (ok, refused):
        assert "Pa55" not in result.stdout + result.stderr


def _publisher_config(path: Path, publisher: str) -> Path:
    path.write_text('[transport]\nplugin = "memory"\n' + publisher + PAYLOAD_TOML)
    return path


def test_connect_tries_the_fluentd_receivers(tmp_path):
    receiver = ForwardReceiver(shared_key="fwd-Pa55", port=free_port())
    path = _publisher_config(tmp_path / "agent.toml", (
        f'[[publishers]]\nplugin = "fluentd"\npublish_timeout = 5\n[publishers.options]\n'
        f'servers = ["{receiver.url}"]\nshared_key = "fwd-Pa55"\n'))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(path.read_text().replace('"fwd-Pa55"', '"bad-Pa55"'))
    with receiver:
        ok = _connect(path)
        refused = _connect(wrong)
        assert receiver.count == 0  # nothing was sent
    stopped = _connect(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"publishers[0] (fluentd): ok: {receiver.url} accepted the connection" in ok.stdout
    assert [accepted for *_, accepted in receiver.handshakes] == [True, False], refused.stdout
    assert refused.returncode == 1 and "publishers[0] (fluentd): failed: " in refused.stdout
    assert stopped.returncode == 1 and "does not answer" in stopped.stdout
    for result in (ok, refused, stopped):
        assert "Pa55" not in result.stdout + result.stderr


def test_connect_logs_in_to_the_databridge_receivers(tmp_path, server_cert, test_ca):
    receiver = DatabridgeReceiver(server_cert, users={"admin": "th-Pa55"})
    publisher = (f'[[publishers]]\nplugin = "thrift"\n[publishers.options]\nurls = ["{receiver.url}"]\n'
                 f'username = "admin"\npassword = "th-Pa55"\nca_file = "{test_ca.ca_file}"\ntimeout = 5\n')
    path = _publisher_config(tmp_path / "agent.toml", publisher)
    wrong = _publisher_config(tmp_path / "wrong.toml", publisher.replace('"th-Pa55"', '"bad-Pa55"'))
    with receiver:
        ok = _connect(path)
        refused = _connect(wrong)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"publishers[0] (thrift): ok: {receiver.url} accepted the login" in ok.stdout
    assert receiver.logins == [("admin", True), ("admin", False)] and receiver.logouts == 1
    assert receiver.events == []
    assert refused.returncode == 1 and "refused the credentials" in refused.stdout
    for result in (ok, refused):
        assert "Pa55" not in result.stdout + result.stderr


def test_connect_checks_the_file_publishers_path(tmp_path):
    (tmp_path / "plain-file").write_text("")
    path = _publisher_config(tmp_path / "agent.toml", (
        f'[[publishers]]\nplugin = "file"\noptions = {{ path = "{tmp_path}/new/dir/records.jsonl" }}\n'
        f'[[publishers]]\nplugin = "file"\noptions = {{ path = "{tmp_path}/plain-file/records.jsonl" }}\n'))
    result = _connect(path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[1] == f"publishers[0] (file): ok: {tmp_path}/new/dir/records.jsonl is writable"
    assert lines[2].startswith("publishers[1] (file): failed: ") and "is not a directory" in lines[2]
    assert not (tmp_path / "new").exists()  # nothing written


def test_a_plugin_without_a_check_is_reported_not_checked(site, tmp_path):
    dist = site.dist("pca-quiet", {"pca.log_publishers": {"quiet": "quiet_sink:Sink"},
                                   "pca.event_handlers": {"audit": "quiet_sink:Audit"}})
    dist.add_module("quiet_sink", """
        from pca_core import EventHandler, LogPublisher

        class Sink(LogPublisher):
            api_version = (2, 0)
            def publish(self, batch, *, timeout=None):
                return len(batch)

        class Audit(EventHandler):
            api_version = (2, 0)
            def handle(self, event, values, context):
                pass
    """)
    dist.install()
    path = _publisher_config(tmp_path / "agent.toml", '[[publishers]]\nplugin = "quiet"\n'
                                                      '[[event_handlers]]\nplugin = "audit"\n')
    result = _connect(path, env=site.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "transport (memory): ok",
        "publishers[0] (quiet): not checked: the quiet plugin offers no receiver check",
        "event_handlers[0] (audit): ok: built"]


def test_connect_refuses_an_invalid_configuration_before_trying_anything(tmp_path):
    path = _mqtt_config(tmp_path / "agent.toml", "http://127.0.0.1:1883")
    result = _connect(path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "transport.urls[0]" in result.stderr


# --- pca config init ------------------------------------------------------------------------------------


def _schema_keys(struct: type, prefix: str) -> list[str]:
    keys = []
    for field in msgspec.structs.fields(struct):
        key = f"{prefix}.{field.name}"
        nested = next((t for t in getattr(field.type, "__args__", (field.type,))
                       if isinstance(t, type) and issubclass(t, msgspec.Struct)), None)
        if nested is not None:
            keys += _schema_keys(nested, key)
        elif field.name != "options":
            keys.append(key)
    return keys


def _all_keys() -> list[str]:
    from pca_core.api.settings import PluginChoice, PublisherConfig

    keys = []
    for field in msgspec.structs.fields(Config):
        if field.name == "publishers":
            keys += _schema_keys(PublisherConfig, "publishers")
        elif field.name == "event_handlers":
            keys += _schema_keys(PluginChoice, "event_handlers")
        elif field.name != "payload":
            keys += _schema_keys(field.type, field.name)
    return keys


def test_every_key_of_the_configuration_has_its_help():
    assert sorted(set(_all_keys()) - set(KEYS)) == []
    assert sorted(set(KEYS) - set(_all_keys())) == []


def _starter(tmp_path: Path) -> Path:
    result = run_pca("config", "init")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "agent.toml"
    path.write_text(result.stdout)
    return path


def test_the_starter_configuration_passes_config_check(tmp_path):
    path = _starter(tmp_path)
    check = run_pca("config", "check", "--config", str(path), "--format", "json")
    assert check.returncode == 0, check.stderr
    effective = json.loads(check.stdout)
    assert effective["transport"]["plugin"] == "mqtt"
    assert effective["transport"]["urls"] == ["mqtt://127.0.0.1:1883"]
    assert effective["payload"]["MEMBER_ID"] == "php.member-1"


def _tables(text: str) -> list[tuple[str, bool, list[str]]]:
    """(table, whether its header is commented, its lines) for every table header of ``text``."""
    tables: list[tuple[str, bool, list[str]]] = []
    for line in text.splitlines():
        header = re.fullmatch(r"(# )?\[\[?([\w.]+)\]\]?", line)
        if header:
            tables.append((header[2], bool(header[1]), []))
        elif tables:
            tables[-1][2].append(line)
    return tables


def test_the_starter_shows_every_section_and_key_with_its_true_default(tmp_path):
    text = _starter(tmp_path).read_text()
    tables = _tables(text)
    assert [name for name, _, _ in tables] == [
        "agent", "transport", "transport.tls", "transport.options", "artifacts", "artifacts.options",
        "health", "logs", "logs.multiline", "http", "publishers", "publishers.options", "event_handlers",
        "event_handlers.options", "payload"]
    shown = {f"{name}.{m[1]}" for name, _, lines in tables for line in lines
             if (m := re.match(r"^(?:# )?(\w+) = ", line))}
    assert set(_all_keys()) <= shown
    defaults = json.loads(json.dumps(msgspec.to_builtins(Config())))
    for name, _commented, lines in tables:
        if name.split(".")[0] in ("publishers", "event_handlers", "payload") or name.endswith("options"):
            continue
        for line in lines:
            entry = re.fullmatch(r"# (\w+) = (.*)", line)
            if not entry:
                continue
            default = defaults
            for part in [*name.split("."), entry[1]]:
                default = default.get(part) if isinstance(default, dict) else None
            if default is not None:  # a key unset by default shows an example instead
                assert tomllib.loads(f"v = {entry[2]}")["v"] == default, line


def test_uncommenting_the_starters_defaults_changes_nothing(tmp_path):
    path = _starter(tmp_path)
    text = path.read_text()
    examples = {value for _, value in KEYS.values() if value is not None}
    opened = []
    in_active_table = False
    for line in text.splitlines():
        if re.fullmatch(r"\[[\w.]+\]", line):
            in_active_table = True
        elif re.fullmatch(r"(# )?\[\[?[\w.]+\]\]?", line):
            in_active_table = False
        entry = re.fullmatch(r"# (\w+) = (.*)", line)
        if in_active_table and entry and entry[2] not in examples:
            line = line[2:]
        opened.append(line)
    (tmp_path / "opened.toml").write_text("\n".join(opened) + "\n")
    assert text != (tmp_path / "opened.toml").read_text()
    first, _ = config.load(path, environ={})
    second, _ = config.load(tmp_path / "opened.toml", environ={})
    assert config.to_data(first) == config.to_data(second)


def test_init_writes_a_private_file_and_never_overwrites_one_unless_forced(tmp_path):
    path = tmp_path / "agent.toml"
    first = run_pca("config", "init", "--output", str(path))
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("# mine\n")
    again = run_pca("config", "init", "--output", str(path))
    assert again.returncode == 1
    assert again.stderr.strip() == f"pca: error: {path}: (file): exists already; --force overwrites it"
    assert path.read_text() == "# mine\n"
    forced = run_pca("config", "init", "--output", str(path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert path.read_text() == run_pca("config", "init").stdout


@pytest.fixture
def legacy_home(tmp_path: Path) -> Path:
    return Path(shutil.copytree(ROOT / "examples" / "legacy", tmp_path / "legacy"))


def _effective(path: Path) -> dict:
    loaded, _warnings = config.load(path, environ={})
    return config.to_data(loaded)


def _convert(home: Path, out: Path) -> subprocess.CompletedProcess[str]:
    result = run_pca("config", "init", "--legacy", str(home / "agent.conf"), "--output", str(out))
    assert result.returncode == 0, result.stderr
    _no_traceback(result)
    return result


def test_the_legacy_example_converts_to_toml_that_loads_to_the_same_configuration(legacy_home, tmp_path):
    out = tmp_path / "agent.toml"
    result = _convert(legacy_home, out)
    assert _effective(out) == _effective(legacy_home / "agent.conf")
    text = out.read_text()
    assert f'payload_file = "{legacy_home}/payload/launch-params"' in text  # the instance's, read at start
    assert 'password = "manager"  # a secret: better "${PCA_MQTT_PASSWORD}"' in text
    assert 'password = "admin"  # a secret: better "${PCA_THRIFT_PASSWORD}"' in text
    assert "eyJhbGciOiJSUzI1NiJ9" not in text  # the payload's TOKEN stays in the payload file
    assert "mb.publisher.timeout: no native equivalent, left out" in result.stderr
    assert "holds the secrets of" in result.stderr and "transport.password, publishers[0].options.password" \
        in result.stderr
    assert "manager" not in result.stderr


def test_a_legacy_file_with_log_publishing_and_odd_values_round_trips(legacy_home, tmp_path):
    conf = legacy_home / "agent.conf"
    conf.write_text(conf.read_text()
                    .replace("enable.data.publisher=false", "enable.data.publisher=true")
                    .replace("log.file.paths=", "log.file.paths=/var/log/app.log|/var/log/b.log")
                    .replace("mb.password=manager", 'mb.password=pa${ss"w\\rd')
                    .replace("mb.urls=localhost:1883", "mb.urls=localhost:1883,backup:1884")
                    + "LB_CLUSTER_ID=lb.from.agent.conf\nno.such.key=1\n")
    out = tmp_path / "agent.toml"
    result = _convert(legacy_home, out)
    assert _effective(out) == _effective(conf)
    assert "no.such.key: unknown key, ignored" in result.stderr
    effective = _effective(out)
    assert [p["streams"] for p in effective["publishers"]] == [["health"], ["logs"]]
    assert effective["payload"]["LB_CLUSTER_ID"] == "lb.from.agent.conf"
    assert "pa${ss" not in result.stderr


def test_a_payload_key_in_both_files_is_warned_about(legacy_home, tmp_path):
    conf = legacy_home / "agent.conf"
    conf.write_text(conf.read_text() + "MEMBER_ID=php.member-from-conf\n")
    result = _convert(legacy_home, tmp_path / "agent.toml")
    assert "MEMBER_ID: agent.conf's value wins over the payload file's in the legacy form" in result.stderr
    legacy = _effective(conf)
    native = _effective(tmp_path / "agent.toml")
    assert legacy["payload"]["MEMBER_ID"] == "php.member-from-conf"
    assert native["payload"]["MEMBER_ID"] == "php.member-1"  # what cannot be expressed, and was said


def test_an_invalid_legacy_file_is_refused_as_pca_run_refuses_it(legacy_home, tmp_path):
    conf = legacy_home / "agent.conf"
    conf.write_text(conf.read_text().replace("mb.urls=localhost:1883", "mb.urls=MB-URLS"))
    out = tmp_path / "agent.toml"
    result = run_pca("config", "init", "--legacy", str(conf), "--output", str(out))
    assert result.returncode == 1
    assert "mb.urls" in result.stderr and "placeholder" in result.stderr
    assert not out.exists()
    _no_traceback(result)


def test_init_with_payload_but_no_legacy_file_is_a_usage_error():
    result = run_pca("config", "init", "--payload", "launch-params")
    assert result.returncode == 2
    assert "--payload goes with --legacy" in result.stderr

