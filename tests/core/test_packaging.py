"""pca-core builds as an sdist and a wheel, and a fresh environment with only the wheel works."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.support.configs import PAYLOAD_TOML

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True, text=True)
    return out


def test_the_wheel_holds_the_package_its_type_marker_and_entry_points(dists):
    (wheel,) = dists.glob("pca_core-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "pca_core/py.typed" in names
    assert "pca_core/config/__init__.py" in names
    assert "pca_core/data/stratos-events.json" in names
    assert "pca_core/stratos/events/_generated.py" in names
    assert not any(name.startswith("tests/") for name in names)
    assert "memory = pca_core.builtin.memory:MemoryTransport" in entry_points
    assert "file = pca_core.builtin.file:FileLogPublisher" in entry_points
    assert "pca.artifact_repos" not in entry_points  # git is its own distribution, pca-git
    assert "pca = pca_core.cli.main:main" in entry_points


def test_a_fresh_environment_with_the_wheel_lists_memory_and_file_and_hints_at_amqp_and_git(dists, tmp_path):
    (wheel,) = dists.glob("pca_core-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([env_dir / "bin" / "python", "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True)
    pca = env_dir / "bin" / "pca"
    listing = subprocess.run([pca, "plugins"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[:2] for line in listing.splitlines()] == [["pca.transports", "memory"],
                                                                   ["pca.log_publishers", "file"]]
    assert all(line.split()[-1] == "ok" for line in listing.splitlines()), listing
    config = tmp_path / "agent.toml"
    config.write_text('[transport]\nplugin = "amqp"\n' + PAYLOAD_TOML)
    result = subprocess.run([pca, "run", "--config", config], capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install pca-amqp" in result.stderr
    assert "Traceback" not in result.stderr
    # A payload naming a repository selects the git artifact repository, its own distribution.
    config.write_text('[transport]\nplugin = "memory"\n' + PAYLOAD_TOML
                      + 'REPO_URL = "git://127.0.0.1/app.git"\nCARTRIDGE_KEY = "tvnw63ufg9gh5111"\n')
    result = subprocess.run([pca, "config", "check", "--config", config], capture_output=True, text=True)
    assert result.returncode == 1
    assert "artifacts.plugin" in result.stderr and "pip install pca-git" in result.stderr
    assert "Traceback" not in result.stderr
