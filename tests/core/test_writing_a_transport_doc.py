"""docs/writing-a-transport.md builds a working distribution: its code blocks, copied into a directory,
install with pip, pass ruff, and pass the transport conformance suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "writing-a-transport.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE = re.compile(r"^# (pca-kite/\S+)( \(continued\))?$")


def extract(doc: str, into: Path) -> list[str]:
    """Writes every file of the doc's distribution under ``into``; returns the layout's paths."""
    layout: list[str] = []
    for lang, text in BLOCK.findall(doc):
        first, _, body = text.partition("\n")
        named = FILE.match(first)
        if named:
            path = into / named.group(1)
            if named.group(2):
                assert path.exists(), f"{named.group(1)} is continued before it starts"
                path.write_text(path.read_text() + "\n\n" + body)
            else:
                assert not path.exists(), f"{named.group(1)} starts twice"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
        elif lang == "text" and first.startswith("pca-kite/"):
            for line in text.splitlines():
                name, _, description = line.partition(" ")
                layout.append(name)
                if description.strip().startswith("empty"):
                    (into / name).parent.mkdir(parents=True, exist_ok=True)
                    (into / name).touch()
    return layout


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_the_distribution_on_the_page_installs_and_passes_the_conformance_suite(tmp_path):
    layout = extract(DOC.read_text(), tmp_path)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(layout), "the layout on the page and its code blocks name different files"
    project = tmp_path / "pca-kite"

    lint = run(sys.executable, "-m", "ruff", "check", "--no-cache", "--config", ROOT / "pyproject.toml",
               "--config", "lint.isort.known-first-party=['pca_kite', 'tests']",
               "--config", "lint.isort.known-third-party=['pca_core']", ".", cwd=project)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    site = tmp_path / "site"
    install = run(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  "--no-deps", "--target", site, project, cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "pca_kite" / "py.typed").exists()
    assert not (site / "tests").exists(), "the tests were installed as a top-level package"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCA_", "PYTEST_"))}
    env["PYTHONPATH"] = str(site)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # stevedore's entry point cache
    suite = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests", cwd=project,
                env=env)
    summary = suite.stdout.strip().splitlines()[-1] if suite.stdout.strip() else suite.stderr
    assert suite.returncode == 0, suite.stdout[-5000:] + suite.stderr[-2000:]
    skipped = re.findall(r"does not declare capability '(\w+)'", suite.stdout)
    assert skipped == ["tls"] * 3, summary  # kite offers everything else, redelivery included
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 25, summary
