"""Extensions still running when the agent stops: their process groups are killed, never orphaned."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from pca_core.agent.extensions import ExtensionRunner
from pca_core.api.event_handler import HandlerContext
from tests.support.configs import PAYLOAD_TOML
from tests.support.process import PcaProcess
from tests.support.waiting import wait_until

# A script that starts a child, records both process ids, then waits for the child.
LINGERING = """#!/bin/bash
sleep 300 &
echo "$$ $!" > "$(dirname "$0")/pids.tmp"
mv "$(dirname "$0")/pids.tmp" "$(dirname "$0")/pids"
wait
"""
# The same, ignoring SIGTERM: only SIGKILL ends it.
STUBBORN = LINGERING.replace("sleep 300 &", "trap '' TERM\nsleep 300 &")


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` exits within ``timeout`` seconds (a pidfd becomes readable when it does)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def running_pids(directory: Path) -> list[int]:
    assert wait_until((directory / "pids").exists), "the script did not start"
    return [int(pid) for pid in (directory / "pids").read_text().split()]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def ext_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "extensions"
    directory.mkdir()
    return directory


def write_script(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(body)
    path.chmod(0o700)


def in_background(runner: ExtensionRunner, event: str) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(runner.run(event, {"EVENT": event})), daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("body", [LINGERING, STUBBORN], ids=["exits-on-SIGTERM", "ignores-SIGTERM"])
def test_close_kills_the_process_group_of_a_running_script(ext_dir, body):
    write_script(ext_dir, "StartServers.sh", body)
    runner = ExtensionRunner(ext_dir, [], HandlerContext({}, None, None, None), timeout=300)
    thread, result = in_background(runner, "StartServers")
    pids = running_pids(ext_dir)
    try:
        runner.close(grace=0.5)
        assert all(gone(pid) for pid in pids)
        thread.join(10)
        assert result == [False]
    finally:
        kill_all(pids)


def test_no_script_starts_after_close(ext_dir):
    write_script(ext_dir, "StartServers.sh", LINGERING)
    runner = ExtensionRunner(ext_dir, [], HandlerContext({}, None, None, None), timeout=300)
    runner.close(grace=0.5)
    assert not runner.run("StartServers", {"EVENT": "StartServers"})
    assert not (ext_dir / "pids").exists()


def test_kill_now_ends_running_scripts_at_once(ext_dir):
    write_script(ext_dir, "StartServers.sh", STUBBORN)
    runner = ExtensionRunner(ext_dir, [], HandlerContext({}, None, None, None), timeout=300)
    thread, result = in_background(runner, "StartServers")
    pids = running_pids(ext_dir)
    try:
        runner.kill_now()
        assert all(gone(pid) for pid in pids)
        thread.join(10)
        assert result == [False]
    finally:
        kill_all(pids)


# --- pca run --------------------------------------------------------------------------------------------


@pytest.fixture
def lingering_agent(tmp_path):
    """A ``pca run`` config whose first extension (CreateLVSDummyInterface) outlives the shutdown deadline."""
    extensions = tmp_path / "extensions"
    extensions.mkdir()
    write_script(extensions, "CreateLVSDummyInterface.sh", STUBBORN)
    state = tempfile.mkdtemp(prefix="pca-", dir="/tmp")  # short: the control socket lives there
    path = tmp_path / "agent.toml"
    path.write_text(f'[transport]\nplugin = "memory"\n[agent]\nshutdown_timeout = 1\nstate_dir = "{state}"\n'
                    f'extensions_dir = "{extensions}"\n' + PAYLOAD_TOML
                    + 'LVS_VIRTUAL_IP = "10.0.0.9|255.0.0.0"\n')
    yield path, extensions
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("second", [None, signal.SIGINT], ids=["deadline", "second-signal"])
def test_a_script_running_at_shutdown_is_killed_with_its_children(lingering_agent, second):
    path, extensions = lingering_agent
    agent = PcaProcess("run", "--config", str(path))
    pids: list[int] = []
    try:
        agent.wait_for("agent running")
        pids = running_pids(extensions)
        agent.proc.send_signal(signal.SIGTERM)
        agent.wait_for("shutting down gracefully")
        if second is not None:
            agent.proc.send_signal(second)
        code = agent.finish()
        assert code == (0 if second is None else 128 + second)
        for pid in pids:
            assert gone(pid), f"process {pid} outlived the agent:\n{agent.output}"
    finally:
        agent.kill()
        kill_all(pids)
    assert "Traceback" not in agent.output


# --- Without pidfds (Linux before 5.3) ------------------------------------------------------------------


def test_exit_is_seen_by_polling_too_and_the_process_is_left_to_be_reaped():
    from pca_core.agent.extensions import _exited_by_polling

    done = subprocess.Popen(["true"])
    running = subprocess.Popen(["sleep", "300"])
    try:
        assert not _exited_by_polling([done, running], time.monotonic() + 0.1)
        assert _exited_by_polling([done], time.monotonic() + 10)
        assert done.wait(10) == 0  # still there to be reaped, with its exit code
    finally:
        running.kill()
        running.wait(10)
