"""The ``pca`` command, run as a user runs it: in a subprocess."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pca_core import __version__
from tests.support.configs import PAYLOAD_TOML as PAYLOAD
from tests.support.dists import MISSING_PUBLISHER, missing_shipped_env, run_pca
from tests.support.process import PcaProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENT_LIBRARIES = ("paho", "proton", "kafka", "fluent", "thrift", "dulwich", "redis", "stevedore",
                    "pca_mqtt", "pca_amqp", "pca_kafka", "pca_fluentd", "pca_thrift")


@pytest.fixture
def memory_config(tmp_path):
    path = tmp_path / "agent.toml"
    state = tempfile.mkdtemp(prefix="pca-", dir="/tmp")  # short: the control socket lives there
    path.write_text(f'[transport]\nplugin = "memory"\n[agent]\nshutdown_timeout = 5\nstate_dir = "{state}"\n'
                    + PAYLOAD)
    yield path
    shutil.rmtree(state, ignore_errors=True)


def test_version():
    result = run_pca("--version")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"pca {__version__}"  # the rest: tests/core/test_cli_operator.py


def test_help_imports_no_plugin_and_no_client_library():
    code = ("import sys\nfrom pca_core.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            f"    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {CLIENT_LIBRARIES!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "run" in result.stdout and "plugins" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_plugins_lists_each_plugin_from_its_own_distribution():
    # The development environment (scripts/bootstrap) holds every distribution of the repository.
    result = run_pca("plugins")
    assert result.returncode == 0
    rows = [line.split()[:3] for line in result.stdout.splitlines()]
    assert all(line.split()[-1] == "ok" for line in result.stdout.splitlines()), result.stdout
    for row in (["pca.transports", "memory", "pca-core"], ["pca.log_publishers", "file", "pca-core"],
                ["pca.transports", "mqtt", "pca-mqtt"], ["pca.artifact_repos", "git", "pca-git"],
                ["pca.transports", "redis", "pca-redis-example"]):
        assert row in rows, result.stdout


def test_run_with_an_uninstalled_plugin_prints_the_install_hint(tmp_path):
    name, dist = MISSING_PUBLISHER
    path = tmp_path / "agent.toml"
    path.write_text(f'[transport]\nplugin = "memory"\n[[publishers]]\nplugin = "{name}"\n' + PAYLOAD)
    result = run_pca("run", "--config", str(path), env=missing_shipped_env(tmp_path / "site"))
    assert result.returncode == 1
    assert f"pip install {dist}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_config_check_prints_the_legacy_defaults_with_passwords_masked(tmp_path):
    home = tmp_path / "pca"
    shutil.copytree(ROOT / "examples" / "legacy", home)
    conf = home / "agent.conf"
    conf.write_text(conf.read_text().replace("mb.password=manager", "mb.password=mb-Pa55")
                    .replace("thrift.server.admin.password=admin", "thrift.server.admin.password=th-Pa55"))
    result = run_pca("config", "check", "--config", str(conf))  # the thrift publisher is pca-thrift's
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'plugin = "mqtt"' in out and '"localhost:1883"' in out
    assert 'SERVICE_NAME = "php"' in out
    assert out.count('password = "***"') == 2
    assert 'TOKEN = "***"' in out
    for secret in ("mb-Pa55", "th-Pa55", "c2VjcmV0"):
        assert secret not in out + result.stderr
    assert "configuration is valid" in result.stderr


def test_config_check_as_json(memory_config):
    result = run_pca("config", "check", "--config", str(memory_config), "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["transport"]["plugin"] == "memory"


def test_config_check_of_a_bad_file_names_file_and_key_without_traceback(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nworkers = "four"\n' + PAYLOAD)
    result = run_pca("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"pca: error: {path}: agent.workers: expected int, got str"


def test_config_check_validates_the_selected_plugins_options(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[transport]\nplugin = "memory"\n[transport.options]\nbuss = "x"\n' + PAYLOAD)
    result = run_pca("config", "check", "--config", str(path))
    assert result.returncode == 1
    assert "transport.options.buss: unknown key (known keys: bus)" in result.stderr


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    result = run_pca("run", "--config", str(tmp_path / "nope.conf"))
    assert result.returncode == 1
    assert "cannot be read" in result.stderr and "Traceback" not in result.stderr


def test_json_log_lines(memory_config):
    result = run_pca("--log-format", "json", "config", "check", "--config", str(memory_config))
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries[-1]["level"] == "INFO" and "configuration is valid" in entries[-1]["message"]


def test_log_file(memory_config, tmp_path):
    log = tmp_path / "pca.log"
    result = run_pca("--log-file", str(log), "config", "check", "--config", str(memory_config))
    assert result.returncode == 0
    assert "configuration is valid" in log.read_text()
    assert result.stderr == ""


def test_a_log_file_in_a_missing_directory_is_refused(memory_config, tmp_path):
    missing = tmp_path / "logs" / "pca"
    log = missing / "pca.log"
    result = run_pca("--log-file", str(log), "config", "check", "--config", str(memory_config))
    assert result.returncode == 2
    assert result.stderr == (f"pca: error: --log-file {log}: the directory {missing} does not exist; create "
                             "it (with the owner and mode the log should have) or choose another path\n")
    assert not (tmp_path / "logs").exists()  # nothing created on the way


_SAYS = {signal.SIGTERM: "SIGTERM: shutting down gracefully",
         signal.SIGINT: "SIGINT: shutting down gracefully",
         # No reload: it says so, and how to apply a changed configuration.
         signal.SIGHUP: "SIGHUP: reloading the configuration is not supported"}


@pytest.mark.parametrize("signum", list(_SAYS), ids=lambda signum: signal.Signals(signum).name)
def test_a_signal_stops_the_agent_gracefully_with_exit_0(memory_config, signum):
    agent = PcaProcess("run", "--config", str(memory_config))
    try:
        agent.wait_for("agent running")
        agent.proc.send_signal(signum)
        assert agent.finish() == 0
    finally:
        agent.kill()
    assert _SAYS[signum] in agent.output
    assert "transport closed" in agent.output
    assert agent.output.rstrip().endswith("stopped")
    assert "Traceback" not in agent.output


def test_a_second_signal_exits_at_once(site, tmp_path):
    dist = site.dist("pca-stuck", {"pca.transports": {"stuck": "stuck_transport:Stuck"}})
    dist.add_module("stuck_transport", """
        import threading
        from pca_core.builtin.memory import MemoryTransport

        class Stuck(MemoryTransport):
            def close(self, timeout=None):
                print("stuck transport: closing slowly", flush=True)
                threading.Event().wait(timeout)
    """)
    dist.install()
    path = tmp_path / "agent.toml"
    path.write_text('[transport]\nplugin = "stuck"\n[agent]\nshutdown_timeout = 60\n'
                    f'state_dir = "{tmp_path}/state"\n' + PAYLOAD)
    agent = PcaProcess("run", "--config", str(path), env=site.env)
    try:
        agent.wait_for("agent running")
        agent.proc.send_signal(signal.SIGTERM)
        agent.wait_for("closing slowly")
        agent.proc.send_signal(signal.SIGINT)
        assert agent.finish() == 128 + signal.SIGINT
    finally:
        agent.kill()
    assert "SIGINT again: exiting now" in agent.output


def test_demo_runs_and_exits_0():
    result = run_pca("demo")
    assert result.returncode == 0, result.stderr
    timeline = [line.split("] ", 1)[1] for line in result.stdout.splitlines() if line.startswith("[")]
    received = [line.split("<- ")[1] for line in timeline if "control  <- " in line]
    assert received == ["initializer/CompleteTopologyRequestEvent", "initializer/CompleteTenantRequestEvent",
                        "initializer/CompleteApplicationSignUpsRequestEvent",
                        "instance/status/InstanceStartedEvent", "instance/status/InstanceActivatedEvent",
                        "instance/status/InstanceMaintenanceModeEvent",
                        "instance/status/InstanceReadyToShutdownEvent"]
    assert "member php.member-1 of php.demo.domain is serving" in result.stderr  # the extension ran
    assert timeline[-1] == "agent: stopped cleanly"


def test_status_and_maintenance_talk_to_the_running_agent(memory_config):
    state_dir = memory_config.read_text().split('state_dir = "')[1].split('"')[0]
    agent = PcaProcess("run", "--config", str(memory_config))
    try:
        agent.wait_for("agent running")
        agent.wait_for("waiting for the complete topology")
        status = run_pca("status", "--state-dir", state_dir)
        assert status.returncode == 0, status.stderr
        rows = dict(line.split(None, 1) for line in status.stdout.splitlines())
        assert rows["phase"] == "waiting for the complete topology"
        assert rows["transport"] == "connected"
        assert rows["waiting_for"].startswith("the complete topology from the control plane (requested")
        as_json = json.loads(run_pca("status", "--json", "--state-dir", state_dir).stdout)
        assert as_json["phase"] == "waiting for the complete topology" and as_json["ready"] is False
        on = run_pca("maintenance", "on", "--config", str(memory_config))
        assert on.returncode == 1 and "Traceback" not in on.stderr
        assert ("maintenance on: the agent is waiting for the complete topology: only an active (or "
                "activating) member can go into maintenance") in on.stderr
        off = run_pca("maintenance", "off", "--state-dir", state_dir)
        assert off.returncode == 1
        assert ("maintenance off: the agent is waiting for the complete topology, not in maintenance"
                in off.stderr)
        assert run_pca("sync", "--state-dir", state_dir).returncode == 1  # no repository known yet
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.finish() == 0
    finally:
        agent.kill()
    gone = run_pca("status", "--state-dir", state_dir)
    assert gone.returncode == 1
    assert "no agent is running" in gone.stderr and "Traceback" not in gone.stderr


def test_simulate_waits_for_an_agent_and_stops_on_a_signal(memory_config):
    simulator = PcaProcess("simulate", "--config", str(memory_config))
    try:
        simulator.wait_for("simulating the control plane for member")
        simulator.proc.send_signal(signal.SIGTERM)
        assert simulator.finish() == 0
    finally:
        simulator.kill()


def test_demo_over_a_transport_that_is_not_installed_names_those_that_are():
    result = run_pca("demo", "--transport", "nats", "--url", "nats://localhost:4222")
    assert result.returncode == 1
    assert "no transport plugin named 'nats'" in result.stderr and "installed: amqp, kafka" in result.stderr
    assert "Traceback" not in result.stderr


def _with_stdout_closed_early(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``pca ARGS`` with a stdout pipe whose reader has gone, as in ``pca ARGS | head -0``."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        return subprocess.run([sys.executable, "-m", "pca_core", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)


def test_a_stdout_closed_early_ends_the_command_quietly(tmp_path):
    from pca_core.agent.control import ControlServer

    state = Path(tempfile.mkdtemp(prefix="pca-", dir="/tmp"))
    server = ControlServer(state / "control.sock", {"status": lambda _a: {"phase": "active"}})
    server.start()
    try:
        status = _with_stdout_closed_early("status", "--state-dir", str(state))
    finally:
        server.close(10.0)
        shutil.rmtree(state, ignore_errors=True)
    listing = _with_stdout_closed_early("plugins")  # writes while it runs, not only at exit
    for result in (status, listing):
        assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
        assert result.stderr == ""
        assert result.returncode == 141  # as a shell reports a process that SIGPIPE ended
