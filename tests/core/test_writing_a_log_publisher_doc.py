"""docs/writing-a-log-publisher.md works: its files make a distribution that builds, installs and passes.

The files are the page's code blocks whose first line names a path of the layout block. The distribution
is built into a wheel and installed into a directory of its own (``pip install --target``), never into
the test environment; its tests run from a copy, so that the package comes from the wheel, not the
source tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.configs import PAYLOAD_TOML

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "writing-a-log-publisher.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def blocks() -> list[tuple[str, str]]:
    return [(lang, text) for lang, text in FENCE.findall(DOC.read_text(encoding="utf-8"))]


def layout() -> dict[str, str]:
    """The layout block: path -> its note (``(empty: ...)`` for a file without a code block)."""
    (text,) = [text for lang, text in blocks() if lang == "text" and text.startswith("pca-httplog/")]
    entries = {}
    for line in text.splitlines()[1:]:
        path, _, note = line.strip().partition(" ")
        entries[path] = note.strip()
    return entries


def files() -> dict[str, str]:
    """The distribution's files the page shows: path -> content."""
    listed = layout()
    shown = {}
    for _lang, text in blocks():
        first = text.splitlines()[0] if text else ""
        path = first[2:].strip() if first.startswith("# ") else ""
        if path in listed:
            assert path not in shown, f"{path} is shown twice"
            shown[path] = text
    return shown


def run(*command, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def test_every_file_of_the_layout_is_shown_or_empty_and_imports_only_the_public_api():
    listed, shown = layout(), files()
    assert set(shown) <= set(listed)
    for path, note in listed.items():
        assert path in shown or note.startswith("(empty"), f"{path} is neither shown nor empty"
    for path, text in shown.items():
        if path.endswith(".py"):
            imported = set(re.findall(r"^(?:from|import) (pca_core[\w.]*)", text, re.MULTILINE))
            assert imported <= {"pca_core", "pca_core.api", "pca_core.testing"}, (path, imported)


@pytest.mark.slow
def test_the_distribution_builds_installs_lists_checks_and_passes_the_suite(tmp_path):
    dist, wheels, site, run_dir = (tmp_path / name for name in ("pca-httplog", "wheels", "site", "run"))
    for path in layout():
        target = dist / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files().get(path, ""), encoding="utf-8")

    built = run(*PIP, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(dist))
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("pca_httplog-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "pca_httplog/py.typed" in names and "pca_httplog/publisher.py" in names
    assert not any(name.startswith("tests/") for name in names), "the tests were packaged"
    assert "httplog = pca_httplog.publisher:HttpLogPublisher" in entry_points

    installed = run(*PIP, "install", "--no-deps", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}

    listing = run(sys.executable, "-m", "pca_core", "plugins", env=env, check=True).stdout
    assert ["pca.log_publishers", "httplog", "pca-httplog", "0.1.0", "ok"] in [
        line.split() for line in listing.splitlines()], listing

    (snippet,) = [text for lang, text in blocks() if text.startswith("# /etc/pca/agent.toml")]
    config = tmp_path / "agent.toml"
    config.write_text(snippet + '\n[transport]\nplugin = "memory"\n' + PAYLOAD_TOML)
    checked = run(sys.executable, "-m", "pca_core", "config", "check", "--config", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "a-token" not in checked.stdout  # the token is a Secret: masked
    config.write_text(config.read_text().replace("https://logs.example.com/pca", "ftp://logs.example.com"))
    refused = run(sys.executable, "-m", "pca_core", "config", "check", "--config", str(config), env=env)
    assert refused.returncode == 1
    assert "publishers[0].options.url: an http:// or https:// URL with a host" in refused.stderr

    shutil.copytree(dist / "tests", run_dir / "tests")  # away from the source: the package is the wheel's
    tests = run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", cwd=run_dir, env=env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    passed = re.search(r"\b(\d+) passed\b", tests.stdout)
    assert passed and int(passed.group(1)) >= 12, tests.stdout  # the whole suite ran
    assert "skipped" not in tests.stdout  # httplog declares ack: nothing to skip
