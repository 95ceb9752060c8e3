"""Plugins use only the public API: ``pca_core``, ``pca_core.api`` and ``pca_core.testing``.

Every Python file of every distribution under ``plugins/`` and ``examples/`` (their tests included) is
parsed, and each import of the core checked, so a plugin cannot come to depend on the core's internals.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = frozenset({"pca_core", "pca_core.api", "pca_core.testing"})
SUBMODULES = frozenset(p.stem for p in (ROOT / "pca_core").iterdir() if p.suffix == ".py" or p.is_dir())
FILES = sorted(p for top in ("plugins", "examples") for p in (ROOT / top).rglob("*.py")
               if ".venv" not in p.parts and "build" not in p.parts)


def core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a ``pca_core`` module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # ``from pca_core import api`` is fine; ``from pca_core import runtime`` reaches inside.
            if node.module == "pca_core":
                found += [(node.lineno, f"pca_core.{alias.name}") for alias in node.names
                          if alias.name in SUBMODULES]
    return [(line, module) for line, module in found if module.split(".")[0] == "pca_core"]


def test_there_are_plugin_files_to_check():
    assert any("pca_mqtt" in p.parts for p in FILES) and any("pca_redis" in p.parts for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_a_plugin_imports_only_the_public_api(path):
    private = [f"line {line}: {module}" for line, module in core_imports(path) if module not in PUBLIC]
    assert private == [], f"{path.relative_to(ROOT)} imports private core modules"


def test_the_check_finds_a_private_import(tmp_path):
    sample = tmp_path / "plugin.py"
    sample.write_text("import pca_core.api\nfrom pca_core.runtime.plugins import prepare\n"
                      "from pca_core import runtime, Transport\n")
    assert core_imports(sample) == [(1, "pca_core.api"), (2, "pca_core.runtime.plugins"), (3, "pca_core"),
                                    (3, "pca_core.runtime")]
