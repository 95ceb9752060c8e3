"""``pca config check`` refuses exactly what ``pca run`` would refuse, with the same words.

Each case is an invalid configuration; both commands must exit 1 and print the same error, which names the
file (or the environment variable), the key and what was expected, without a traceback. ``run`` must fail
while loading, before it connects to anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.configs import PAYLOAD
from tests.support.dists import missing_shipped_env

ROOT = Path(__file__).resolve().parents[2]


def payload(**changes: str | None) -> str:
    values = {**PAYLOAD, "MEMBER_ID": "php.member-1", **changes}
    return "\n[payload]\n" + "".join(f'{k} = "{v}"\n' for k, v in values.items() if v is not None)


MEMORY = '[transport]\nplugin = "memory"\n'
MQTT = '[transport]\nplugin = "mqtt"\n'
AMQP = '[transport]\nplugin = "amqp"\n'
KAFKA = '[transport]\nplugin = "kafka"\n'
REPO = {"REPO_URL": "http://git.example/app.git", "CARTRIDGE_KEY": "tvnw63ufg9gh5111"}
LEGACY_CONF = ("[agent]\nmb.urls=localhost:1883\nthrift.receiver.urls=localhost:7711\n"
               "thrift.server.admin.username=admin\nthrift.server.admin.password=admin\n"
               "cep.stats.publisher.enabled=false\n")
LEGACY_PAYLOAD = ",".join(f"{k}={v}" for k, v in PAYLOAD.items() if k != "MEMBER_ID")


@dataclass(frozen=True)
class Case:
    name: str
    toml: str
    expected: tuple[str, ...]  # every one appears in the error, after the file name
    env: dict[str, str] = field(default_factory=dict)
    count: int = 1  # problems reported
    launch_params: str | None = None  # set: ``toml`` is a legacy agent.conf with this payload beside it


CASES = [
    Case("unknown section", MEMORY + "[transprot]\nurls = []\n" + payload(), ("transprot: unknown key",)),
    Case("unknown agent key", MEMORY + "[agent]\nworker = 4\n" + payload(), ("agent.worker: unknown key",)),
    Case("wrong type", MEMORY + '[agent]\nworkers = "four"\n' + payload(), ("agent.workers: expected int",)),
    Case("topology request interval", MEMORY + "[agent]\ntopology_request_interval = 0\n" + payload(),
         ("agent.topology_request_interval: a number of seconds greater than 0, not 0",)),
    Case("qos 2", MEMORY + "qos = 2\n" + payload(), ("transport.qos: expected one of 0, 1, got 2",)),
    Case("transport not installed", '[transport]\nplugin = "nats"\n' + payload(),
         ("transport.plugin: no transport plugin named 'nats'", "installed: amqp, kafka, memory, mqtt")),
    Case("shipped publisher not installed", MEMORY + '[[publishers]]\nplugin = "syslog"\n' + payload(),
         ("publishers[0].plugin: no log publisher plugin named 'syslog'", "pip install pca-syslog")),
    Case("kafka scheme", KAFKA + 'urls = ["amqp://broker"]\n' + payload(),
         ("transport.urls:", "unknown scheme 'amqp'", 'set transport.plugin = "amqp"')),
    Case("publisher not installed", MEMORY + '[[publishers]]\nplugin = "nosuch"\n' + payload(),
         ("publishers[0].plugin: no log publisher plugin named 'nosuch'",)),
    Case("event handler not installed", MEMORY + '[[event_handlers]]\nplugin = "nosuch"\n' + payload(),
         ("event_handlers[0].plugin: no event handler plugin named 'nosuch'",)),
    Case("reconnect delays backwards", MEMORY + "reconnect_delay = 5\nmax_reconnect_delay = 1\n" + payload(),
         ("transport.max_reconnect_delay: a number of seconds not below reconnect_delay",)),
    Case("publisher batch size", MEMORY + '[[publishers]]\nplugin = "file"\nbatch_size = 0\n'
         'options = { path = "/tmp/x" }\n' + payload(), ("publishers[0].batch_size: a whole number",)),
    Case("memory url", MEMORY + 'urls = ["mqtt://broker:1883"]\n' + payload(),
         ("transport.urls[0]: not a memory transport URL",)),
    Case("mqtt scheme", MQTT + 'urls = ["http://broker:1883"]\n' + payload(),
         ("transport.urls[0]:", "unknown scheme 'http'")),
    Case("amqp scheme", AMQP + 'urls = ["mqtt://broker:1883"]\n' + payload(),
         ("transport.urls[0]:", "unknown scheme 'mqtt'", 'set transport.plugin = "mqtt"')),
    Case("amqp prefetch", AMQP + 'urls = ["amqp://broker"]\n[transport.options]\nprefetch = 0\n' + payload(),
         ("transport.options.prefetch: 1 to 65535 messages, not 0",)),
    Case("mqtt tls and plain", MQTT + 'urls = ["mqtts://a:8883", "mqtt://b:1883"]\n' + payload(),
         ("transport.urls: mixes TLS",)),
    Case("mqtt keepalive", MQTT + 'urls = ["broker:1883"]\n[transport.options]\nkeepalive = 0\n' + payload(),
         ("transport.options.keepalive: 1 to 65535 seconds",)),
    Case("mqtt unknown option", MQTT + 'urls = ["broker:1883"]\n[transport.options]\nkeepalives = 5\n'
         + payload(), ("transport.options.keepalives: unknown key",)),
    Case("mqtt persistent session without a client id",
         MQTT + 'urls = ["broker:1883"]\nclient_id = ""\n[transport.options]\npersistent_session = true\n'
         + payload(), ("transport.options.persistent_session: a persistent session needs",)),
    Case("mqtt unreadable ca file", MQTT + 'urls = ["broker:1883"]\n[transport.tls]\n'
         'ca_file = "/nonexistent/ca.pem"\n' + payload(), ("transport.tls.ca_file: a readable file",)),
    Case("memory unknown option", MEMORY + '[transport.options]\nbuss = "x"\n' + payload(),
         ("transport.options.buss: unknown key",)),
    Case("file publisher without path", MEMORY + '[[publishers]]\nplugin = "file"\n' + payload(),
         ("publishers[0].options.path: missing",)),
    Case("file publisher path type", MEMORY + '[[publishers]]\nplugin = "file"\noptions = { path = 5 }\n'
         + payload(), ("publishers[0].options.path: expected str",)),
    Case("streams type", MEMORY + '[[publishers]]\nplugin = "file"\nstreams = "logs"\n'
         'options = { path = "/tmp/x" }\n' + payload(), ("publishers[0].streams: expected array",)),
    Case("missing payload key", MEMORY + payload(CLUSTER_ID=None), ("CLUSTER_ID: missing",)),
    Case("missing member id", MEMORY + payload(MEMBER_ID=None),
         ("MEMBER_ID: missing; this key is mandatory",)),
    Case("no payload at all", MEMORY, ("APPLICATION_ID: missing", "MEMBER_ID: missing"), count=7),
    Case("bad ports", MEMORY + payload(PORTS="eighty"), ("PORTS: expected '|'-separated TCP ports",)),
    Case("repo without key", MEMORY + payload(REPO_URL=REPO["REPO_URL"]),
         ("CARTRIDGE_KEY: missing; mandatory when REPO_URL is set",)),
    Case("repository plugin not installed", MEMORY + '[artifacts]\nplugin = "nosuch"\n' + payload(**REPO),
         ("artifacts.plugin: no artifact repository plugin named 'nosuch'",)),
    Case("git timeout", MEMORY + "[artifacts.options]\ntimeout = 0\n" + payload(**REPO),
         ("artifacts.options.timeout: a positive number of seconds",)),
    Case("legacy launch-params without a member id", LEGACY_CONF,
         ("MEMBER_ID: missing; this key is mandatory",), launch_params=LEGACY_PAYLOAD),
    Case("environment variable", MEMORY + payload(), ("transport.qos: expected one of 0, 1, got '5'",),
         env={"PCA_TRANSPORT__QOS": "5"}),
    Case("environment section", MEMORY + payload(), ("transprot: unknown section",),
         env={"PCA_TRANSPROT__URLS": "x"}),
    Case("every problem of the core's keys at once", MEMORY + "qos = 2\n[agent]\nworkers = \"four\"\n"
         + payload(PORTS="eighty"), ("agent.workers", "transport.qos", "PORTS"), count=3),
    Case("every problem of the plugins at once",
         MQTT + 'urls = ["http://broker:1883"]\n[transport.options]\nkeepalive = 0\n'
         '[[publishers]]\nplugin = "nosuch"\n[[publishers]]\nplugin = "file"\n' + payload(),
         ("transport.urls", "transport.options.keepalive", "publishers[0].plugin",
          "publishers[1].options.path"), count=4),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[dict, dict, Path]]:
    """Both commands for every case, run in one interpreter (tests/support/cli_driver.py)."""
    home = tmp_path_factory.mktemp("configs")
    runs, paths = [], {}
    for case in CASES:
        path = home / f"{case.name.replace(' ', '-')}.toml"
        if case.launch_params is not None:
            path = home / case.name.replace(" ", "-") / "agent.conf"
            (path.parent / "payload").mkdir(parents=True)
            (path.parent / "payload" / "launch-params").write_text(case.launch_params)
        path.write_text(case.toml)
        paths[case.name] = path
        runs.append({"args": ["config", "check", "--config", str(path)], "env": case.env})
        runs.append({"args": ["run", "--config", str(path)], "env": case.env})
    env = missing_shipped_env(home / "site")  # knows pca-syslog as shipped, and not installed
    result = subprocess.run([sys.executable, "-m", "tests.support.cli_driver"], input=json.dumps(runs),
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=True)
    results = json.loads(result.stdout)
    return {case.name: (results[2 * i], results[2 * i + 1], paths[case.name]) for i, case in enumerate(CASES)}


def test_there_are_at_least_fifteen_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_config_check_and_run_refuse_it_alike(outcomes, case):
    check, run, path = outcomes[case.name]
    assert check["code"] == 1, check
    assert run["code"] == 1, run
    assert check["stderr"] == run["stderr"], "config check and run disagree"
    error = check["stderr"]
    assert error.startswith("pca: error: ")
    assert "Traceback" not in error + run["stdout"]
    for expected in case.expected:
        assert expected in error, error
    named = [line for line in error.splitlines() if line.strip()]
    if case.count > 1:
        assert named[0] == f"pca: error: {case.count} problems in the configuration:", error
        named = named[1:]
    assert len(named) == case.count, error
    where = f"environment variable {next(iter(case.env))}" if case.env else str(path)
    if case.launch_params is not None:
        where = str(path.parent / "payload" / "launch-params")
    assert all(where in line for line in named), error
