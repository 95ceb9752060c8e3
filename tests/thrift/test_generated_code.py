"""The Thrift code committed in pca-thrift is what the compiler makes of its IDL today."""

from __future__ import annotations

import filecmp
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

PLUGIN = ROOT / "plugins" / "pca_thrift"


def _files(directory):
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)


def test_the_generated_code_is_current(tmp_path):
    if shutil.which("thrift") is None:
        pytest.fail("the Thrift compiler is missing: scripts/system-packages installs thrift-compiler")
    subprocess.run([str(PLUGIN / "generate"), str(tmp_path)], check=True, capture_output=True, timeout=60)
    committed, fresh = PLUGIN / "pca_thrift" / "_gen", tmp_path / "pca_thrift" / "_gen"
    assert _files(committed) == _files(fresh)
    stale = [str(p) for p in _files(fresh) if not filecmp.cmp(committed / p, fresh / p, shallow=False)]
    assert stale == [], "run plugins/pca_thrift/generate and commit the result"
