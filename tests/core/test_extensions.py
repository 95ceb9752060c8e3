"""Extensions: the values of §5.3, real bash scripts run by the runner, and Python event handlers."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from pca_core.agent.extensions import OUTPUT_LIMIT, ExtensionRunner, as_text, extension_values, script_names
from pca_core.api.event_handler import EventHandler, HandlerContext
from pca_core.api.secrets import Secret
from pca_core.config import Config, PluginChoice, build
from pca_core.stratos.topology import TopologyModel
from tests.support.samples import SAMPLES

LOGGER = "pca_core.agent.extensions"
PASSWORD = "s3cr3t-Pa55word"

PAYLOAD = {
    "APPLICATION_ID": "php-tomcat-app", "SERVICE_NAME": "php", "CLUSTER_ID": "php.php1.domain",
    "MEMBER_ID": "php.member-1", "PORTS": "80", "MULTITENANT": "false", "TENANT_ID": "-1234",
    "LB_CLUSTER_ID": "tomcat.tomcat2.domain", "PERSISTENCE_MAPPING": "/dev/sdc|/mnt/data",
    "PUPPET_IP": "10.0.0.5", "LOG_LEVEL": "DEBUG",
}


def make_config(**payload: str) -> Config:
    tree = {
        "agent": {"application_path": "/var/www", "payload_file": "/opt/pca/payload/launch-params",
                  "lb_private_ip": "10.9.9.9", "lb_public_ip": "20.9.9.9"},
        "payload": {**PAYLOAD, **payload},
    }
    return build(tree, source="(test)", environ={})


@pytest.fixture(scope="module")
def topology() -> TopologyModel:
    model = TopologyModel()
    sample = SAMPLES / "topology.CompleteTopologyEvent.json"
    model.handle("topology/CompleteTopologyEvent", sample.read_bytes())
    return model


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "extensions"
    directory.mkdir()
    return directory


def context(config: Config, topology: TopologyModel | None = None) -> HandlerContext:
    return HandlerContext(config.payload, logging.getLogger("pca.handler"), topology, None)


def runner(ext_dir: Path | None, config: Config, handlers=(), **kwargs) -> ExtensionRunner:
    return ExtensionRunner(ext_dir, list(handlers), context(config), **kwargs)


def script(directory: Path, name: str, body: str, *, executable: bool = True, shebang: bool = True) -> Path:
    path = directory / name
    path.write_text(("#!/bin/bash\n" if shebang else "") + body)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def recorded_env(path: Path) -> dict[str, str]:
    """Reads what ``env -0`` wrote: NUL-separated, so values may hold newlines."""
    env = {}
    for entry in path.read_bytes().split(b"\0"):
        if entry:
            key, _, value = entry.decode().partition("=")
            env[key] = value
    return env


def assert_gone(pid: int) -> None:
    """Waits (bounded) until process ``pid`` has exited; a pidfd becomes readable when it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], 10)
        assert ready, f"process {pid} is still running"
    finally:
        os.close(fd)


# --- Values -----------------------------------------------------------------------------------------------


def test_common_values_come_from_the_configuration_and_the_topology(config, topology):
    values = extension_values("InstanceStartedEvent", config, topology, mb_ip="192.168.1.7")

    assert values["MB_IP"] == "192.168.1.7"
    assert values["APPLICATION_PATH"] == "/var/www"
    assert values["PARAM_FILE_PATH"] == "/opt/pca/payload/launch-params"
    assert values["PERSISTENCE_MAPPINGS"] == "/dev/sdc|/mnt/data"
    # The only member of the LB cluster tomcat.tomcat2.domain.
    assert values["LB_IP"] == "10.244.1.5"
    assert values["LB_PUBLIC_IP"] == "192.168.56.20"
    assert values["SERVICE_PROPERTY_category"] == "framework"
    assert values["SERVICE_PROPERTY_payload_parameter.PORT_MAPPINGS"] == "http:80:8280|https:443:8243"
    assert values["CLUSTER_PROPERTY_min.count"] == "1"
    assert values["CLUSTER_PROPERTY_payload_parameter.LOG_LEVEL"] == "INFO"
    assert values["MEMBER_PROPERTY_PRIMARY"] == "true"
    assert values["MEMBER_PROPERTY_MIN_COUNT"] == "1"
    for key, value in PAYLOAD.items():
        assert values[key] == value
    assert values["EVENT"] == "InstanceStartedEvent"
    assert all(isinstance(v, str) for v in values.values())


def test_without_a_topology_the_lb_ips_come_from_the_configuration_and_there_are_no_properties(config):
    values = extension_values("StartServers", config, None)

    assert values["LB_IP"] == "10.9.9.9"
    assert values["LB_PUBLIC_IP"] == "20.9.9.9"
    assert "MB_IP" not in values  # unset values are dropped
    prefixes = ("SERVICE_PROPERTY_", "CLUSTER_PROPERTY_", "MEMBER_PROPERTY_")
    assert not any(key.startswith(prefixes) for key in values)


def test_an_lb_cluster_missing_from_the_topology_falls_back_to_the_configuration(topology):
    values = extension_values("StartServers", make_config(LB_CLUSTER_ID="haproxy.haproxy.domain"), topology)

    assert (values["LB_IP"], values["LB_PUBLIC_IP"]) == ("10.9.9.9", "20.9.9.9")


def test_payload_overwrites_common_values_and_extra_overwrites_the_payload(topology):
    config = make_config(MB_IP="10.1.1.1", LOG_LEVEL="WARN")

    values = extension_values("ArtifactUpdatedEvent", config, topology, mb_ip="192.168.1.7",
                              extra={"LOG_LEVEL": "TRACE", "EVENT": "not this"})

    assert values["MB_IP"] == "10.1.1.1"
    assert values["LOG_LEVEL"] == "TRACE"
    assert values["EVENT"] == "ArtifactUpdatedEvent"


def test_every_extra_value_becomes_a_string_and_unset_ones_are_dropped(config):
    extra = {"SUBSCRIPTION_TENANT_ID": 5, "ARTIFACT_UPDATED_STATUS": True, "RATIO": 0.5,
             "LIST_JSON": ["a", 1], "MAP_JSON": {"k": [True, None]}, "GONE": None,
             "ARTIFACT_UPDATED_REPO_PASSWORD": Secret(PASSWORD)}

    values = extension_values("DomainMappingAddedEvent", config, None, extra=extra)

    assert values["SUBSCRIPTION_TENANT_ID"] == "5"
    assert values["ARTIFACT_UPDATED_STATUS"] == "true"
    assert values["RATIO"] == "0.5"
    assert json.loads(values["LIST_JSON"]) == ["a", 1]
    assert json.loads(values["MAP_JSON"]) == {"k": [True, None]}
    assert "GONE" not in values
    assert values["ARTIFACT_UPDATED_REPO_PASSWORD"] == PASSWORD  # the extension needs it


def test_wire_objects_become_their_json(topology):
    cluster = topology.cluster("php.php1.domain")

    member_list = json.loads(as_text(cluster.member_map))

    assert member_list["php.member-1"]["defaultPrivateIP"] == "10.0.0.11"


# --- Scripts: values and environment ----------------------------------------------------------------------


def test_a_script_gets_every_value_as_stratos_variables_and_nothing_of_the_agents_environment(
        ext_dir, config, topology, monkeypatch):
    monkeypatch.setenv("AGENT_PRIVATE", "not for extensions")
    script(ext_dir, "InstanceStartedEvent.sh", "env -0 > env.bin\n")
    values = extension_values("InstanceStartedEvent", config, topology, mb_ip="192.168.1.7")
    before = dict(os.environ)

    assert runner(ext_dir, config).run("InstanceStartedEvent", values)

    env = recorded_env(ext_dir / "env.bin")  # written in the extensions directory: the working directory
    assert os.environ == before
    assert not any(key.startswith("STRATOS_") for key in os.environ)
    for key, value in values.items():
        assert env[f"STRATOS_{key}"] == value
    assert env["STRATOS_LB_IP"] == "10.244.1.5"
    assert env["STRATOS_SERVICE_PROPERTY_category"] == "framework"
    assert env["STRATOS_CLUSTER_PROPERTY_min.count"] == "1"
    assert env["STRATOS_MEMBER_PROPERTY_PRIMARY"] == "true"
    assert env["STRATOS_PUPPET_IP"] == "10.0.0.5"
    assert env["STRATOS_EVENT"] == "InstanceStartedEvent"
    assert "AGENT_PRIVATE" not in env
    assert env["PATH"] == os.environ.get("PATH", os.defpath)
    others = {k for k in env if not k.startswith("STRATOS_")} - {"PATH", "HOME", "LANG"}
    assert others <= {"PWD", "SHLVL", "_", "OLDPWD"}  # what bash itself adds


def test_a_value_of_one_event_does_not_leak_into_the_next(ext_dir, config):
    script(ext_dir, "ArtifactUpdatedEvent.sh", "env -0 > env-artifacts.bin\n")
    script(ext_dir, "InstanceActivatedEvent.sh", "env -0 > env-activated.bin\n")
    run = runner(ext_dir, config)

    assert run.run("ArtifactUpdatedEvent", extension_values(
        "ArtifactUpdatedEvent", config, None, extra={"ARTIFACT_UPDATED_REPO_URL": "https://git.example/r"}))
    assert run.run("InstanceActivatedEvent", extension_values("InstanceActivatedEvent", config, None))

    assert recorded_env(ext_dir / "env-artifacts.bin")["STRATOS_ARTIFACT_UPDATED_REPO_URL"]
    activated = recorded_env(ext_dir / "env-activated.bin")
    assert "STRATOS_ARTIFACT_UPDATED_REPO_URL" not in activated
    assert activated["STRATOS_EVENT"] == "InstanceActivatedEvent"


def test_a_value_arrives_verbatim_without_any_shell(ext_dir, config):
    tricky = "two  spaces \"double\" 'single' $(touch pwned) `touch pwned2` $HOME ;|&\nsecond line\\n *"
    script(ext_dir, "StartServers.sh", "env -0 > env.bin\n")

    assert runner(ext_dir, config).run("StartServers", {"TRICKY": tricky, "EVENT": "StartServers"})

    assert recorded_env(ext_dir / "env.bin")["STRATOS_TRICKY"] == tricky
    assert not (ext_dir / "pwned").exists() and not (ext_dir / "pwned2").exists()


def test_volume_mount_gets_the_mapping_as_its_first_argument(ext_dir, config):
    script(ext_dir, "VolumeMount.sh", 'printf %s "$1" > arg.txt\nprintf %s "$#" > argc.txt\n')
    values = extension_values("VolumeMount", config, None, extra={"VALUE1": "/dev/sdc|/mnt/data|/dev/sdd|/x"})

    assert runner(ext_dir, config).run("VolumeMount", values)

    assert (ext_dir / "arg.txt").read_text() == "/dev/sdc|/mnt/data|/dev/sdd|/x"
    assert (ext_dir / "argc.txt").read_text() == "1"


def test_other_events_get_no_arguments(ext_dir, config):
    script(ext_dir, "StartServers.sh", 'printf %s "$#" > argc.txt\n')

    assert runner(ext_dir, config).run("StartServers", {"VALUE1": "x", "EVENT": "StartServers"})

    assert (ext_dir / "argc.txt").read_text() == "0"


# --- Scripts: names -----------------------------------------------------------------------------------------


def test_script_names_are_the_pca_name_then_the_java_name():
    assert script_names("InstanceStartedEvent") == ("InstanceStartedEvent.sh", "instance-started.sh")
    assert script_names("ArtifactUpdatedEvent") == ("ArtifactUpdatedEvent.sh", "artifacts-updated.sh")
    assert script_names("VolumeMount") == ("VolumeMount.sh", "mount-volumes.sh")
    assert script_names("clean") == ("clean.sh",)
    assert script_names("MemberInitializedEvent") == ("MemberInitializedEvent.sh",)


def test_the_java_agents_hyphenated_name_is_found_when_the_pca_name_is_absent(ext_dir, config):
    script(ext_dir, "instance-started.sh", "echo java > ran.txt\n")

    assert runner(ext_dir, config).run("InstanceStartedEvent", {"EVENT": "InstanceStartedEvent"})

    assert (ext_dir / "ran.txt").read_text() == "java\n"


def test_the_pca_name_is_preferred_when_both_exist(ext_dir, config):
    script(ext_dir, "instance-started.sh", "echo java >> ran.txt\n")
    script(ext_dir, "InstanceStartedEvent.sh", "echo pca >> ran.txt\n")

    assert runner(ext_dir, config).run("InstanceStartedEvent", {"EVENT": "InstanceStartedEvent"})

    assert (ext_dir / "ran.txt").read_text() == "pca\n"


def test_a_readable_script_that_is_not_executable_runs_with_bash(ext_dir, config):
    script(ext_dir, "clean.sh", "echo cleaned > ran.txt\n", executable=False)

    assert runner(ext_dir, config).run("clean", {"EVENT": "clean"})

    assert (ext_dir / "ran.txt").read_text() == "cleaned\n"


def test_an_executable_script_without_a_shebang_runs_with_bash(ext_dir, config):
    script(ext_dir, "clean.sh", "echo cleaned > ran.txt\n", shebang=False)

    assert runner(ext_dir, config).run("clean", {"EVENT": "clean"})

    assert (ext_dir / "ran.txt").read_text() == "cleaned\n"


def test_a_missing_script_is_not_an_error(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    assert runner(ext_dir, config).run("MemberStartedEvent", {"EVENT": "MemberStartedEvent"})

    assert "no extension script for MemberStartedEvent" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_extensions_directory_runs_handlers_only(config):
    seen = []

    class Recorder(EventHandler):
        def handle(self, event, values, context):
            seen.append(event)

    assert runner(None, config, [Recorder(CHOICE, None)]).run("clean", {"EVENT": "clean"})

    assert seen == ["clean"]


def test_an_event_name_with_a_path_in_it_runs_no_script(tmp_path, ext_dir, config):
    script(tmp_path, "escape.sh", "echo ran > ran.txt\n")

    assert runner(ext_dir, config).run("../escape", {"EVENT": "x"})

    assert not (tmp_path / "ran.txt").exists()


# --- Scripts: outcome ---------------------------------------------------------------------------------------


def test_a_non_zero_exit_fails_and_is_logged(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    script(ext_dir, "StartServers.sh", "echo starting\necho 'cannot bind' >&2\nexit 3\n")

    assert not runner(ext_dir, config).run("StartServers", {"EVENT": "StartServers"})

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("StartServers" in m and "exited with 3" in m for m in errors)
    assert "cannot bind" in caplog.text and "starting" in caplog.text


def test_stderr_output_with_exit_0_succeeds(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    script(ext_dir, "StartServers.sh", "echo 'warning: deprecated option' >&2\n")

    assert runner(ext_dir, config).run("StartServers", {"EVENT": "StartServers"})

    assert "warning: deprecated option" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_script_that_times_out_fails_and_its_process_group_is_killed(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    script(ext_dir, "StartServers.sh", "sleep 60 &\necho $! > child.pid\necho $$ > script.pid\nwait\n")

    assert not runner(ext_dir, config, timeout=1.0).run("StartServers", {"EVENT": "StartServers"})

    assert "timed out" in caplog.text
    assert_gone(int((ext_dir / "script.pid").read_text()))
    assert_gone(int((ext_dir / "child.pid").read_text()))


def test_a_server_left_running_in_the_background_does_not_hold_the_runner(ext_dir, config):
    # The background process keeps the script's stdout open; the runner must not wait for it.
    script(ext_dir, "StartServers.sh", "sleep 60 &\necho $! > server.pid\necho started\n")
    try:
        assert runner(ext_dir, config, timeout=20.0).run("StartServers", {"EVENT": "StartServers"})
        pid = int((ext_dir / "server.pid").read_text())
        os.kill(pid, 0)  # a successful script's background server is left alone
    finally:
        if (ext_dir / "server.pid").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int((ext_dir / "server.pid").read_text()), signal.SIGKILL)


def test_logged_output_is_bounded(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    script(ext_dir, "StartServers.sh", f"head -c {OUTPUT_LIMIT + 1000} /dev/zero | tr '\\0' a\n")

    assert runner(ext_dir, config).run("StartServers", {"EVENT": "StartServers"})

    (record,) = [r for r in caplog.records if "stdout" in r.getMessage()]
    assert record.getMessage().count("a") < OUTPUT_LIMIT + 100
    assert "[1000 more bytes not shown]" in record.getMessage()


# --- Secrets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["exit 0\n", "exit 1\n"])
def test_values_are_never_logged(ext_dir, config, topology, caplog, body):
    caplog.set_level(logging.DEBUG)
    script(ext_dir, "ArtifactUpdatedEvent.sh", body)
    values = extension_values("ArtifactUpdatedEvent", config, topology,
                              extra={"ARTIFACT_UPDATED_REPO_PASSWORD": PASSWORD})

    runner(ext_dir, config).run("ArtifactUpdatedEvent", values)

    assert caplog.records  # the run was logged ...
    assert PASSWORD not in caplog.text  # ... but not its values


def test_a_secret_echoed_by_the_script_is_masked_in_the_log(ext_dir, config, caplog):
    caplog.set_level(logging.DEBUG)
    script(ext_dir, "ArtifactUpdatedEvent.sh",
           'echo "password is $STRATOS_ARTIFACT_UPDATED_REPO_PASSWORD"\n'
           'echo "token $STRATOS_TOKEN" >&2\necho "url $STRATOS_REPO_URL"\n')
    values = {"ARTIFACT_UPDATED_REPO_PASSWORD": PASSWORD, "TOKEN": "tok-123456",
              "REPO_URL": "https://alice:hunter22@git.example/repo.git", "FLAG_KEY": "true",
              "EVENT": "ArtifactUpdatedEvent"}

    assert runner(ext_dir, config).run("ArtifactUpdatedEvent", values)

    assert "password is ***" in caplog.text
    assert "token ***" in caplog.text
    assert "https://alice:***@git.example/repo.git" in caplog.text
    for secret in (PASSWORD, "tok-123456", "hunter22"):
        assert secret not in caplog.text


# --- Python handlers --------------------------------------------------------------------------------------


CHOICE = PluginChoice(plugin="recorder")


class Recorder(EventHandler):
    events = frozenset({"StartServers", "clean"})

    def __init__(self, config=None, options=None):
        super().__init__(config or CHOICE, options)
        self.calls: list[tuple[str, Mapping[str, str], HandlerContext]] = []

    def handle(self, event, values, context):
        self.calls.append((event, dict(values), context))


class Everything(Recorder):
    events = frozenset()


class Exploding(EventHandler):
    def handle(self, event, values, context):
        raise RuntimeError(f"boom with {values['ARTIFACT_UPDATED_REPO_PASSWORD']}")


def test_handlers_are_called_only_for_the_events_they_want_with_unprefixed_values_and_the_context(
        ext_dir, config, topology):
    script(ext_dir, "StartServers.sh", "exit 0\n")
    wanted, everything = Recorder(), Everything()
    ctx = context(config, topology)
    run = ExtensionRunner(ext_dir, [wanted, everything], ctx)
    values = extension_values("StartServers", config, topology)

    assert run.run("StartServers", values)
    assert run.run("InstanceActivatedEvent", extension_values("InstanceActivatedEvent", config, topology))

    assert [c[0] for c in wanted.calls] == ["StartServers"]
    assert [c[0] for c in everything.calls] == ["StartServers", "InstanceActivatedEvent"]
    _, got, got_context = wanted.calls[0]
    assert got == values
    assert not any(key.startswith("STRATOS_") for key in got)
    assert got_context is ctx and got_context.topology is topology


def test_handlers_run_after_the_script_even_when_it_failed(ext_dir, config):
    script(ext_dir, "clean.sh", "exit 1\n")
    recorder = Recorder()

    assert not runner(ext_dir, config, [recorder]).run("clean", {"EVENT": "clean"})

    assert [c[0] for c in recorder.calls] == ["clean"]


def test_a_raising_handler_is_logged_and_the_next_one_still_runs(config, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    recorder = Everything()
    values = {"ARTIFACT_UPDATED_REPO_PASSWORD": PASSWORD, "EVENT": "ArtifactUpdatedEvent"}

    assert not runner(None, config, [Exploding(CHOICE, None), recorder]).run("ArtifactUpdatedEvent", values)

    assert [c[0] for c in recorder.calls] == ["ArtifactUpdatedEvent"]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "Exploding" in record.getMessage() and "RuntimeError" in record.getMessage()
    assert PASSWORD not in caplog.text


def test_a_handler_cannot_change_what_the_next_one_gets(config):
    class Mutator(EventHandler):
        def handle(self, event, values, context):
            values["EVENT"] = "changed"

    recorder = Everything()

    assert not runner(None, config, [Mutator(CHOICE, None), recorder]).run("clean", {"EVENT": "clean"})

    assert recorder.calls[0][1]["EVENT"] == "clean"
