"""The distributions build, and fresh environments made from the wheels alone work.

- pca-core alone: no protocol library (no paho, no dulwich) is installed or imported, ``pca plugins`` lists
  the built-in memory transport and file publisher, and ``pca demo`` runs the whole lifecycle.
- ``pca-core[stratos]``: one install brings pca-mqtt and pca-git, each plugin listed from its own
  distribution.
"""

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from pca_core import __version__
from tests.support.configs import PAYLOAD_TOML

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_LIBRARIES = ("paho", "dulwich", "proton", "kafka", "fluent", "thrift", "redis", "pca_mqtt",
                      "pca_amqp", "pca_kafka", "pca_git")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """Wheels of pca-core, pca-mqtt, pca-git and pca-thrift, built from the working tree."""
    out = tmp_path_factory.mktemp("dist")
    for project in (ROOT, *(ROOT / "plugins" / name for name in ("pca_mqtt", "pca_git", "pca_thrift"))):
        # An sdist first, and the wheel from it: nothing is built inside the source tree.
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(project)],
                       check=True, capture_output=True, text=True)
    return out


def fresh_env(path: Path, wheels: Path, requirement: str) -> Path:
    """A new virtual environment with ``requirement`` installed from the wheels (dependencies from PyPI)."""
    venv.create(path, with_pip=True)
    subprocess.run([path / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--find-links", str(wheels), requirement], check=True, capture_output=True, text=True)
    return path / "bin"


def plugin_rows(bin_dir: Path) -> list[list[str]]:
    listing = subprocess.run([bin_dir / "pca", "plugins"], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in listing.splitlines()]


def test_the_core_wheel_holds_the_package_its_data_and_only_the_built_in_plugins(wheels):
    (wheel,) = wheels.glob("pca_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    assert {"pca_core/py.typed", "pca_core/api/__init__.py", "pca_core/config/__init__.py",
            "pca_core/data/stratos-events.json", "pca_core/stratos/events/wire/topology.py"} <= set(names)
    assert not any(name.startswith(("tests/", "pca_git/", "pca_mqtt/")) for name in names)
    assert "memory = pca_core.builtin.memory:MemoryTransport" in entry_points
    assert "file = pca_core.builtin.file:FileLogPublisher" in entry_points
    assert "pca.artifact_repos" not in entry_points  # git is its own distribution, pca-git
    assert "pca = pca_core.cli.main:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any(lib in line for line in requires if "extra ==" not in line
                   for lib in ("paho", "dulwich", "proton", "kafka", "fluent", "thrift")), requires
    assert any("pca-mqtt" in line and 'extra == "stratos"' in line for line in requires), requires


def test_the_core_alone_runs_the_demo_without_any_protocol_library(wheels, tmp_path):
    bin_dir = fresh_env(tmp_path / "core", wheels, "pca-core")
    assert [row[:3] for row in plugin_rows(bin_dir)] == [["pca.transports", "memory", "pca-core"],
                                                         ["pca.log_publishers", "file", "pca-core"]]
    code = ("import importlib.util, sys\n"
            "from pca_core.cli.main import main\n"
            "code = main(['demo'])\n"
            f"libraries = {PROTOCOL_LIBRARIES!r}\n"
            "print('installed', [n for n in libraries if importlib.util.find_spec(n) is not None])\n"
            "print('imported', sorted({m.split('.')[0] for m in sys.modules} & set(libraries)))\n"
            "sys.exit(code)\n")
    result = subprocess.run([bin_dir / "python", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "InstanceReadyToShutdownEvent" in result.stdout
    assert "installed []" in result.stdout and "imported []" in result.stdout


def test_the_core_alone_names_the_distribution_of_a_missing_plugin(wheels, tmp_path):
    bin_dir = fresh_env(tmp_path / "core", wheels, "pca-core")
    config = tmp_path / "agent.toml"
    config.write_text('[transport]\nplugin = "mqtt"\n' + PAYLOAD_TOML)
    result = subprocess.run([bin_dir / "pca", "run", "--config", config], capture_output=True, text=True)
    assert result.returncode == 1
    assert "transport.plugin" in result.stderr and "pip install pca-mqtt" in result.stderr
    assert "Traceback" not in result.stderr
    # A payload naming a repository selects the git artifact repository, its own distribution.
    config.write_text('[transport]\nplugin = "memory"\n' + PAYLOAD_TOML
                      + 'REPO_URL = "git://127.0.0.1/app.git"\nCARTRIDGE_KEY = "tvnw63ufg9gh5111"\n')
    result = subprocess.run([bin_dir / "pca", "config", "check", "--config", config], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "artifacts.plugin" in result.stderr and "pip install pca-git" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_legacy_file_without_pca_thrift_warns_once_and_loads(wheels, tmp_path):
    bin_dir = fresh_env(tmp_path / "no-thrift", wheels, "pca-mqtt")  # and pca-core, its dependency
    home = shutil.copytree(ROOT / "examples" / "legacy", tmp_path / "legacy")  # health statistics enabled
    result = subprocess.run([bin_dir / "pca", "config", "check", "--config", home / "agent.conf"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("pip install pca-thrift") == 1
    assert "health statistics are not sent" in result.stderr and "Traceback" not in result.stderr
    assert "[[publishers]]" not in result.stdout


def test_the_stratos_extra_installs_mqtt_git_and_thrift(wheels, tmp_path):
    bin_dir = fresh_env(tmp_path / "stratos", wheels, "pca-core[stratos]")
    rows = plugin_rows(bin_dir)
    assert ["pca.log_publishers", "thrift", "pca-thrift", __version__, "ok"] in rows
    assert ["pca.transports", "memory", "pca-core", __version__, "ok"] in rows
    assert ["pca.transports", "mqtt", "pca-mqtt", __version__, "ok"] in rows
    assert ["pca.artifact_repos", "git", "pca-git", __version__, "ok"] in rows
    assert ["pca.log_publishers", "file", "pca-core", __version__, "ok"] in rows
