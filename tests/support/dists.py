"""Separate distributions for discovery tests: a package plus a dist-info with entry points, on a path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FakeDist:
    """A distribution installed into ``root`` (put it on PYTHONPATH to install it)."""

    root: Path
    name: str
    version: str = "1.0"
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)

    def add_module(self, module: str, source: str) -> None:
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))

    def install(self) -> None:
        info = self.root / f"{self.name.replace('-', '_')}-{self.version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {self.version}\n")
        lines = []
        for group, names in self.entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in names.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def pca_env(*paths: Path, cache: Path | None = None) -> dict[str, str]:
    """The environment for a ``pca`` subprocess that sees the given extra distributions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCA_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)  # stevedore's entry point cache, kept out of the home directory
    return env


MISSING_PUBLISHER = ("syslog", "pca-syslog")
"""A log publisher the hint names as shipped by the project, with no distribution installed: every real
shipped plugin is installed in the test environment, so tests of the install hint add this one."""


def missing_shipped_env(directory: Path) -> dict[str, str]:
    """The environment of a ``pca`` subprocess whose discovery knows :data:`MISSING_PUBLISHER` as shipped."""
    directory.mkdir(parents=True, exist_ok=True)
    name, dist = MISSING_PUBLISHER
    (directory / "sitecustomize.py").write_text(
        "from pca_core.runtime import discovery\n"
        f"discovery.SHIPPED[(discovery.LOG_PUBLISHERS, {name!r})] = {dist!r}\n")
    return pca_env(directory)


def run_pca(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m pca_core ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "pca_core", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd, check=False)
