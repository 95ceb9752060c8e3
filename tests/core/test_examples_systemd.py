"""examples/systemd/pca.service: what it promises the operator, and systemd's own checks where they run.

The unit is read with a small parser (keys may repeat in a unit file) and held to what the agent does:
it stops gracefully on SIGTERM within ``agent.shutdown_timeout``, exits 0 when stopped on purpose, keeps
its state in the default ``agent.state_dir`` and refuses a socket directory others may write to.
``systemd-analyze`` (Debian package systemd, which scripts/system-packages installs) verifies the unit and
scores its hardening; without it those tests are skipped.
"""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pca_core.agent.extensions import STOP_GRACE
from pca_core.config.schema import AgentConfig

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "pca.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                           reason="systemd-analyze is not installed (Debian: systemd)")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; continuation lines joined, comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = re.sub(r"\\\n", " ", text)
    for number, raw in enumerate(logical.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None, f"line {number} is neither a section nor key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span (``40``, ``40s``, ``1min 30s``, ``2m``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def only(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is not set"
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times"
    return values[0]


def test_it_runs_pca_with_the_configuration_in_etc(unit):
    argv = shlex.split(only(unit, "Service", "ExecStart"))
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "pca"
    assert argv[1:] == ["run", "--config", "/etc/pca/agent.toml"]
    # pca does not speak sd_notify: Type=notify would time out every start.
    assert only(unit, "Service", "Type") in ("simple", "exec")


def test_it_stops_gracefully_and_gives_the_agent_the_time_it_takes(unit):
    assert only(unit, "Service", "KillSignal") == "SIGTERM"
    timeout = seconds(only(unit, "Service", "TimeoutStopSec"))
    # The shutdown deadline, then an extension script's SIGTERM-to-SIGKILL grace, then the plugins closing:
    # the margin the unit's comment asks for.
    assert timeout >= AgentConfig().shutdown_timeout + 20, timeout
    assert timeout > AgentConfig().shutdown_timeout + 2 * STOP_GRACE
    # SIGHUP stops the agent: a reload command would stop it instead of reloading.
    assert "ExecReload" not in unit["Service"]
    # The application server that StartServers started outlives a restart of the agent.
    assert only(unit, "Service", "KillMode") == "process"


def test_it_restarts_after_a_failure_only_and_gives_up_on_a_start_loop(unit):
    # on-failure, not always: `pca maintenance on --stop` exits 0 and must leave the agent stopped.
    assert only(unit, "Service", "Restart") == "on-failure"
    assert seconds(only(unit, "Service", "RestartSec")) >= 1
    assert int(only(unit, "Unit", "StartLimitBurst")) >= 1
    assert seconds(only(unit, "Unit", "StartLimitIntervalSec")) > 0


def test_it_runs_as_its_own_user_with_the_default_state_directory(unit):
    assert only(unit, "Service", "User") not in ("root", "0")
    state = only(unit, "Service", "StateDirectory")
    assert f"/var/lib/{state}" == AgentConfig().state_dir
    mode = int(only(unit, "Service", "StateDirectoryMode"), 8)
    assert mode & 0o022 == 0, oct(mode)  # the control channel refuses a directory others may write to


def test_it_is_hardened_without_taking_away_what_the_agent_uses(unit):
    service = unit["Service"]
    assert only(unit, "Service", "NoNewPrivileges") == "yes"
    assert only(unit, "Service", "ProtectSystem") == "strict"
    assert only(unit, "Service", "CapabilityBoundingSet") == ""
    families = set(only(unit, "Service", "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families  # control socket; broker, git, receivers, [http]
    assert "MemoryDenyWriteExecute" not in service  # extension scripts may start a JIT (Java)
    assert "ProcSubset" not in service  # health statistics read /proc/meminfo


def verify(unit_text: str, directory: Path) -> tuple[int, list[str]]:
    """``systemd-analyze verify`` of ``unit_text`` as pca.service: exit code and the lines about it.

    ExecStart is pointed at this environment's ``pca``, since verify checks that the program exists.
    """
    pca = Path(sys.executable).with_name("pca")
    assert pca.exists(), pca
    path = directory / "pca.service"
    path.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={pca}", unit_text, flags=re.MULTILINE))
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True,
                            timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if "pca.service" in line]


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    code, complaints = verify(UNIT.read_text(), tmp_path)
    assert code == 0 and not complaints, complaints


@needs_systemd_analyze
def test_systemd_analyze_verify_would_report_a_mistake(tmp_path):
    # verify exits 0 for an unknown key or value; the check above looks at its output for that reason.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter")
    code, complaints = verify(broken, tmp_path)
    assert any("ProtectSystem" in line or "protect system" in line for line in complaints), (code, complaints)


@needs_systemd_analyze
def test_the_hardening_scores_as_systemd_analyze_security_rates_it(tmp_path):
    probe = subprocess.run([SYSTEMD_ANALYZE, "security", "--help"], capture_output=True, text=True,
                           timeout=60)
    if "--offline" not in probe.stdout:
        pytest.skip("this systemd-analyze cannot review a unit file offline (systemd 250 or later can)")
    path = tmp_path / "pca.service"
    shutil.copy(UNIT, path)
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=30", str(path)],
                            capture_output=True, text=True, timeout=60)
    overall = re.search(r"Overall exposure level for pca\.service: ([\d.]+)", result.stdout)
    assert overall is not None, result.stdout + result.stderr
    # 10 is a unit without any protection; 3.0 or less is what the options above give (1.7 with systemd 252).
    assert result.returncode == 0 and float(overall[1]) <= 3.0, overall[0]
