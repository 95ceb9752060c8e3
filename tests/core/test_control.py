from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import shutil
import socket
import stat
import struct
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

from pca_core.agent.control import (
    MAX_CONNECTIONS,
    MAX_REQUEST_BYTES,
    AgentAlreadyRunning,
    AgentNotRunning,
    CommandFailed,
    ControlError,
    ControlServer,
    call,
)
from pca_core.api.errors import PcaError
from tests.support.waiting import wait_until


@pytest.fixture
def short_dir():
    """A directory with a short path: AF_UNIX paths are limited to 107 bytes, tmp_path can be longer."""
    directory = Path(tempfile.mkdtemp(prefix="pca-ctl-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def sock_path(short_dir: Path) -> Path:
    return short_dir / "state" / "control.sock"  # "state" does not exist yet: start() creates it


def _echo(arguments: dict) -> dict:
    return {"got": arguments}


def _fail(arguments: dict) -> dict:
    raise ValueError(f"boom {arguments.get('n')}")


def _refuse(_arguments: dict) -> dict:
    raise PcaError("no artifact repository is known yet")


COMMANDS = {"echo": _echo, "fail": _fail, "refuse": _refuse}


@pytest.fixture
def serve():
    """Starts servers; every one is closed at the end of the test."""
    servers: list[ControlServer] = []

    def start(path: Path, commands=None, **options) -> ControlServer:
        server = ControlServer(path, COMMANDS if commands is None else commands, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close(10.0)


def _control_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "pca-control"]


def _raw(path: Path, data: bytes) -> bytes:
    """Sends ``data`` as is, then EOF, and returns everything the server answers until it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10.0)
        client.connect(os.fspath(path))
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # the server answered before reading it all
            pass
        reply = b""
        try:
            while chunk := client.recv(65536):
                reply += chunk
        except ConnectionResetError:  # the server closed with part of our request unread
            pass
        return reply


def _raw_reply(path: Path, data: bytes) -> dict:
    reply = _raw(path, data)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    return json.loads(reply)


# --- Round trips --------------------------------------------------------------------------------------------


def test_round_trip_with_arguments(sock_path, serve):
    server = serve(sock_path)
    assert server.path == sock_path

    assert call(sock_path, "echo", mode="on", stop=True, n=[1, "x", None]) == {
        "got": {"mode": "on", "stop": True, "n": [1, "x", None]}}
    assert call(sock_path, "echo") == {"got": {}}
    for n in range(20):
        assert call(sock_path, "echo", n=n) == {"got": {"n": n}}
    assert len(_control_threads()) == 1  # one thread, however many connections


def test_a_request_on_the_wire(sock_path, serve):
    serve(sock_path)
    reply = _raw_reply(sock_path, b'{"command": "echo", "arguments": {"a": 1}}\n')
    assert reply == {"ok": True, "result": {"got": {"a": 1}}}
    # "arguments" may be left out; unknown keys are ignored; EOF may end the request instead of a newline
    assert _raw_reply(sock_path, b'{"command": "echo", "version": 2}') == {"ok": True, "result": {"got": {}}}


def test_unknown_command(sock_path, serve):
    serve(sock_path)
    known = r"\(known: echo, fail, refuse\)"
    with pytest.raises(CommandFailed, match=rf"^unknown command 'nope' {known}$") as info:
        call(sock_path, "nope")
    assert info.value.command == "nope"
    assert isinstance(info.value, PcaError)


def test_a_failing_command_is_reported_and_the_server_keeps_serving(sock_path, serve, caplog):
    caplog.set_level(logging.DEBUG, logger="pca_core.agent.control")
    serve(sock_path)

    with pytest.raises(CommandFailed, match=r"^ValueError: boom 7$"):
        call(sock_path, "fail", n=7)
    with pytest.raises(CommandFailed, match=r"^no artifact repository is known yet$"):
        call(sock_path, "refuse")  # a PcaError's message is meant for a person: passed on as it is
    assert call(sock_path, "echo", n=1) == {"got": {"n": 1}}

    failures = [r for r in caplog.records if "control command 'fail' failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.DEBUG]
    assert failures[0].exc_info is None  # the traceback only at debug level
    assert failures[1].exc_info is not None and failures[1].exc_info[0] is ValueError


def test_a_command_must_answer_with_a_json_object(sock_path, serve):
    serve(sock_path, {"none": lambda _a: None, "opaque": lambda _a: {"value": object()}})
    with pytest.raises(CommandFailed, match="returned no result object"):
        call(sock_path, "none")
    with pytest.raises(CommandFailed, match="not JSON"):
        call(sock_path, "opaque")


@pytest.mark.parametrize(("request_line", "error"), [
    (b"{not json\n", "malformed request: not a JSON object"),
    (b"\xff\xfe\n", "malformed request: not a JSON object"),
    (b"[1, 2]\n", "malformed request: not a JSON object"),
    (b"[" * 50_000 + b"\n", "malformed request: not a JSON object"),  # too deep for the decoder
    (b'{"arguments": {}}\n', "'command' must be a non-empty string"),
    (b'{"command": 5}\n', "'command' must be a non-empty string"),
    (b'{"command": "echo", "arguments": [1]}\n', "'arguments' must be a JSON object"),
])
def test_a_malformed_request_gets_an_error_reply(sock_path, serve, request_line, error):
    serve(sock_path)
    reply = _raw_reply(sock_path, request_line)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert call(sock_path, "echo", n=1) == {"got": {"n": 1}}


def test_an_oversized_request_is_refused(sock_path, serve):
    serve(sock_path)
    line = b'{"command": "echo", "arguments": {"x": "' + b"a" * MAX_REQUEST_BYTES + b'"}}\n'
    reply = _raw_reply(sock_path, line)
    assert reply == {"ok": False, "error": f"request too large (more than {MAX_REQUEST_BYTES} bytes)"}
    assert call(sock_path, "echo", n=1) == {"got": {"n": 1}}

    with pytest.raises(ControlError, match="request is too large"):  # the client does not even send it
        call(sock_path, "echo", x="a" * MAX_REQUEST_BYTES)


def test_a_request_of_exactly_the_limit_is_served(sock_path, serve):
    serve(sock_path)
    head, tail = b'{"command": "echo", "arguments": {"x": "', b'"}}\n'
    padding = MAX_REQUEST_BYTES - len(head) - len(tail)
    reply = _raw_reply(sock_path, head + b"a" * padding + tail)
    assert reply == {"ok": True, "result": {"got": {"x": "a" * padding}}}
    reply = _raw_reply(sock_path, head + b"a" * (padding + 1) + tail)
    assert reply["ok"] is False and "too large" in reply["error"]


def test_a_silent_client_times_out_and_the_server_goes_on(sock_path, serve):
    serve(sock_path, timeout=0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10.0)
        client.connect(os.fspath(sock_path))
        client.sendall(b'{"command": "ec')  # and nothing more
        reply = json.loads(client.recv(65536))
    assert reply == {"ok": False, "error": "timed out waiting for the request"}
    assert call(sock_path, "echo") == {"got": {}}


# --- Permissions --------------------------------------------------------------------------------------------


def test_socket_and_directory_are_owner_only(sock_path, serve):
    serve(sock_path)
    assert stat.S_ISSOCK(sock_path.lstat().st_mode)
    assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock_path.parent.stat().st_mode) == 0o700


def test_an_existing_directory_is_left_as_it_is(short_dir, serve):
    short_dir.chmod(0o750)
    serve(short_dir / "control.sock")
    assert stat.S_IMODE(short_dir.stat().st_mode) == 0o750
    assert stat.S_IMODE((short_dir / "control.sock").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o757, 0o1777, 0o770])
def test_a_directory_others_may_write_to_is_refused(short_dir, mode):
    # The check reads the mode bits, so it holds when the tests run as root too.
    short_dir.chmod(mode)
    server = ControlServer(short_dir / "control.sock", COMMANDS)
    with pytest.raises(ControlError) as info:
        server.start()
    assert str(info.value) == (
        f"the control channel's directory {short_dir} is writable by other users (mode {mode:04o}), who "
        f"could replace the agent's socket; make it writable by its owner only (chmod go-w {short_dir}) "
        "or choose another agent.state_dir")
    assert list(short_dir.iterdir()) == []  # no socket made
    assert stat.S_IMODE(short_dir.stat().st_mode) == mode  # and the directory left as it is
    assert _control_threads() == []


@pytest.mark.skipif(os.geteuid() != 0 or not hasattr(socket, "SO_PEERCRED"),
                    reason="needs root (to run a client as another user) and SO_PEERCRED")
def test_another_user_is_refused_by_peer_credentials(short_dir, serve):
    path = short_dir / "control.sock"
    serve(path)
    # Open the file permissions up so that only the SO_PEERCRED check stands between nobody and the agent.
    short_dir.chmod(0o755)
    path.chmod(0o777)
    # A child process (forked: it needs no interpreter that the other user may run) becomes nobody and asks.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no logging, just the exchange through call(); always os._exit
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                call(path, "echo", timeout=10.0)
                os.write(write_end, b"served")
            except ControlError as exc:
                os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    refusal = "CommandFailed: permission denied: uid 65534 may not use the agent's control channel"
    assert answer.startswith(refusal), answer
    assert call(path, "echo") == {"got": {}}  # the owner still can


# --- Finding the agent, or not ------------------------------------------------------------------------------


def test_call_without_an_agent(short_dir):
    path = short_dir / "control.sock"
    message = rf"^no agent is running \(no control socket at {path}\)$"
    with pytest.raises(AgentNotRunning, match=message) as info:
        call(path, "status")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no OSError traceback attached
    with pytest.raises(AgentNotRunning, match="no control socket"):
        call(short_dir / "missing" / "control.sock", "status")


def test_a_stale_socket_is_replaced(sock_path, serve):
    sock_path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(sock_path))
    dead.close()  # the file stays, nobody listens: what a killed agent leaves behind
    assert stat.S_ISSOCK(sock_path.lstat().st_mode)
    with pytest.raises(AgentNotRunning, match="nobody answers"):
        call(sock_path, "status")

    serve(sock_path)
    assert call(sock_path, "echo", n=2) == {"got": {"n": 2}}


def test_a_second_server_refuses_a_live_socket(sock_path, serve):
    first = serve(sock_path)
    inode = sock_path.stat().st_ino
    second = ControlServer(sock_path, {"echo": lambda _a: {"second": True}})
    with pytest.raises(AgentAlreadyRunning, match=rf"another agent is running: it answers on {sock_path}"):
        second.start()
    second.close(1.0)  # must not remove the first server's socket
    assert sock_path.stat().st_ino == inode
    assert call(sock_path, "echo", n=3) == {"got": {"n": 3}}
    assert len(_control_threads()) == 1
    first.close(10.0)


def test_something_else_at_the_path_is_not_replaced(short_dir):
    path = short_dir / "control.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        ControlServer(path, COMMANDS).start()
    assert path.read_text() == "precious"
    assert _control_threads() == []


def test_a_path_too_long_for_a_unix_socket(short_dir):
    path = short_dir / ("d" * 60) / ("s" * 60)
    with pytest.raises(ControlError, match=r"too long for a Unix socket \(\d+ bytes, at most 10[37]\)"):
        ControlServer(path, COMMANDS).start()
    with pytest.raises(ControlError, match="too long for a Unix socket"):
        call(path, "status")
    assert _control_threads() == []


@pytest.mark.parametrize("reply", [
    b"", b"garbage\n", b'{"ok": true}\n', b'{"ok": "yes"}\n', b'{"ok": true, "res'])
def test_a_malformed_reply(short_dir, reply):
    path = short_dir / "fake.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(os.fspath(path))
        listener.listen(1)
        outcome: list[BaseException] = []

        def client() -> None:
            try:
                call(path, "status", timeout=30.0)
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=client)
        caller.start()
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10.0)
            request = b""
            while not request.endswith(b"\n"):
                request += connection.recv(65536)
            assert json.loads(request) == {"command": "status", "arguments": {}}
            connection.sendall(reply)
        caller.join(30.0)
    assert len(outcome) == 1 and type(outcome[0]) is ControlError
    assert "without replying" in str(outcome[0]) if not reply else "reply" in str(outcome[0])


def test_an_agent_that_does_not_answer(short_dir):
    path = short_dir / "fake.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(os.fspath(path))
        listener.listen(1)  # never accepts, never answers
        with pytest.raises(ControlError, match=rf"^the agent at {path} did not answer within 0.2s$"):
            call(path, "status", timeout=0.2)


# --- Starting and closing -----------------------------------------------------------------------------------


def test_close_removes_the_socket_and_ends_the_thread(sock_path, serve):
    server = serve(sock_path)
    threads = _control_threads()
    assert len(threads) == 1 and threads[0].daemon
    assert call(sock_path, "echo") == {"got": {}}

    server.close(10.0)
    assert not sock_path.exists()
    assert not threads[0].is_alive()
    assert _control_threads() == []
    server.close(10.0)  # idempotent
    with pytest.raises(AgentNotRunning, match="no control socket"):
        call(sock_path, "echo")
    with pytest.raises(RuntimeError):
        server.start()  # not restartable


def test_start_twice_is_an_error(sock_path, serve):
    server = serve(sock_path)
    with pytest.raises(RuntimeError):
        server.start()
    assert len(_control_threads()) == 1


def test_close_before_start(sock_path):
    server = ControlServer(sock_path, COMMANDS)
    server.close(1.0)
    server.close(1.0)
    assert not sock_path.exists()


def test_close_does_not_remove_a_socket_that_is_not_its_own(sock_path, serve):
    server = serve(sock_path)
    sock_path.unlink()  # someone removed it, and another agent took the path
    replacement = serve(sock_path)
    server.close(10.0)
    assert stat.S_ISSOCK(sock_path.lstat().st_mode)
    assert call(sock_path, "echo") == {"got": {}}
    replacement.close(10.0)
    assert not sock_path.exists()


def test_a_command_that_closes_the_server_still_gets_its_reply(sock_path, serve):
    # What "maintenance on --stop" amounts to at worst: the channel is closed while the command runs.
    holder: list[ControlServer] = []

    def stop(_arguments: dict) -> dict:
        holder[0].close(10.0)  # from the server thread itself: must neither deadlock nor lose the reply
        return {"requested": "stop"}

    holder.append(serve(sock_path, {"stop": stop}))
    threads = _control_threads()
    assert call(sock_path, "stop") == {"requested": "stop"}
    threads[0].join(10.0)
    assert not threads[0].is_alive()
    assert not sock_path.exists()


def _wait_until_read(client: socket.socket) -> None:
    """Returns once the peer has read everything ``client`` sent (Linux: SIOCOUTQ counts unread bytes)."""
    deadline = time.monotonic() + 10.0
    while struct.unpack("i", fcntl.ioctl(client.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]:
        assert time.monotonic() < deadline, "the server never read the request"
        select.select([], [], [], 0.001)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCOUTQ on a Unix socket is Linux's")
def test_close_is_not_held_up_by_a_client_that_sends_nothing_more(sock_path, serve):
    server = serve(sock_path, timeout=600.0)
    threads = _control_threads()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10.0)
        client.connect(os.fspath(sock_path))
        client.sendall(b'{"command": "ec')  # the server now waits for the rest, for up to 600 s
        _wait_until_read(client)
        server.close(10.0)
        assert not threads[0].is_alive()
        reply = client.recv(65536)
    assert reply == b'{"ok": false, "error": "the agent is shutting down"}\n'
    assert not sock_path.exists()


# --- Several clients ----------------------------------------------------------------------------------------


def _idle_client(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10.0)
    client.connect(os.fspath(path))
    return client


def test_an_idle_client_does_not_hold_up_the_others(sock_path, serve):
    serve(sock_path, timeout=600.0)
    with _idle_client(sock_path) as idle, _idle_client(sock_path) as half:
        half.sendall(b'{"command": "ec')  # and nothing more, for now
        # Far less than the server's read timeout: before, this waited for the idle client's 600 s.
        assert call(sock_path, "echo", n=1, timeout=5.0) == {"got": {"n": 1}}
        half.sendall(b'ho", "arguments": {"n": 2}}\n')
        assert json.loads(half.recv(65536)) == {"ok": True, "result": {"got": {"n": 2}}}
        assert call(sock_path, "echo", n=3, timeout=5.0) == {"got": {"n": 3}}
        assert idle.fileno() >= 0  # still open, still silent
    assert len(_control_threads()) == 1


def test_a_client_over_the_bound_is_refused_at_once(sock_path, serve):
    serve(sock_path, timeout=600.0)
    idle = [_idle_client(sock_path) for _ in range(MAX_CONNECTIONS)]
    refusal = rf"^too many control connections at once \(at most {MAX_CONNECTIONS}\); try again shortly$"
    with pytest.raises(CommandFailed, match=refusal):
        call(sock_path, "echo", timeout=5.0)
    idle.pop().close()  # a place becomes free once the server has seen this one go
    assert wait_until(lambda: _served(sock_path), timeout=10.0)
    for client in idle:
        client.close()


def _served(path: Path) -> bool:
    try:
        return call(path, "echo", timeout=5.0) == {"got": {}}
    except CommandFailed:
        return False
