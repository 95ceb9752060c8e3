"""A script, or its directory, that others may write is warned about (once per path and mode), and runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pca_core.agent.extensions import ExtensionRunner
from pca_core.api.event_handler import HandlerContext

LOGGER = "pca_core.agent.extensions"


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "extensions"
    directory.mkdir()
    directory.chmod(0o755)
    return directory


def make_script(directory: Path, mode: int) -> Path:
    path = directory / "StartServers.sh"
    path.write_text('#!/bin/sh\ntouch "$(dirname "$0")/ran"\n')
    path.chmod(mode)
    return path


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def run(directory: Path) -> bool:
    runner = ExtensionRunner(directory, [], HandlerContext({}, None, None, None))
    return runner.run("StartServers", {"EVENT": "StartServers"})


@pytest.mark.parametrize("mode, who",
                         [(0o757, "others"), (0o775, "its group"), (0o777, "its group and others")],
                         ids=["o+w", "g+w", "go+w"])
def test_a_script_others_may_write_is_warned_about_and_still_runs(ext_dir, caplog, mode, who):
    script = make_script(ext_dir, mode)
    assert run(ext_dir)
    assert (ext_dir / "ran").exists()
    (message,) = warnings(caplog)
    assert str(script) in message and f"writable by {who}" in message and f"{mode:04o}" in message


def test_a_safe_script_in_a_safe_directory_is_not_warned_about(ext_dir, caplog):
    make_script(ext_dir, 0o755)
    assert run(ext_dir)
    assert warnings(caplog) == []


def test_the_directory_is_checked_too(ext_dir, caplog):
    make_script(ext_dir, 0o755)
    ext_dir.chmod(0o777)
    try:
        assert run(ext_dir)
    finally:
        ext_dir.chmod(0o755)
    (message,) = warnings(caplog)
    assert f"directory {ext_dir}" in message and "writable by its group and others" in message


def test_the_warning_comes_once_per_path_and_mode(ext_dir, caplog):
    script = make_script(ext_dir, 0o757)
    runner = ExtensionRunner(ext_dir, [], HandlerContext({}, None, None, None))
    for _ in range(3):
        assert runner.run("StartServers", {"EVENT": "StartServers"})
    assert len(warnings(caplog)) == 1
    script.chmod(0o777)
    assert runner.run("StartServers", {"EVENT": "StartServers"})
    assert len(warnings(caplog)) == 2
