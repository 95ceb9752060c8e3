"""The control channel's server: one thread, serving the agent's commands to its owner and root."""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pca_core.agent.control.protocol import (
    MAX_REQUEST_BYTES,
    AgentAlreadyRunning,
    BadRequest,
    Command,
    ControlError,
    check_length,
    parse_request,
)
from pca_core.api.errors import PcaError

_log = logging.getLogger(__name__)

_BACKLOG = 8
_ACCEPT_BACKOFF = 1.0  # seconds the server waits after an accept() failure such as EMFILE
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlServer:
    """Serves control commands on a Unix socket, on one daemon thread named ``pca-control``.

    The socket is created with mode 0o600 (and its directory with 0o700 when the server creates it), and each
    connection's peer is checked with ``SO_PEERCRED`` where the platform has it: only the agent's own user
    and root are served.

    Commands run on the server thread, one at a time, so a command must return quickly: the agent's commands
    schedule their work and answer at once. While a command runs no other request is read. A command may
    ask the agent to stop (``maintenance on --stop``): its reply is still sent, even when :meth:`close` is
    called meanwhile from another thread, or from the command itself.

    Args:
        path: where the socket is created (at most 107 bytes on Linux).
        commands: the commands by name.
        timeout: seconds a connection may take to send its request, and to take the reply.
    """

    def __init__(self, path: Path, commands: Mapping[str, Command], *, timeout: float = 30.0) -> None:
        self._path = Path(path)
        self._commands = dict(commands)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_write: int | None = None  # closed by close(): the thread's end then reads EOF
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we created

    @property
    def path(self) -> Path:
        """The socket's path."""
        return self._path

    def start(self) -> None:
        """Creates the socket and starts serving.

        Creates the parent directory (mode 0o700) when it is missing and replaces a stale socket file (one
        that nobody answers on).

        Raises:
            AgentAlreadyRunning: an agent already answers on the socket.
            ControlError: the path is too long for a Unix socket, is something other than a socket, or the
                socket cannot be created.
            RuntimeError: the server was started before or closed.
        """
        with self._lock:
            if self._thread is not None or self._closed:
                raise RuntimeError("control server already started or closed")
            check_length(self._path)
            self._prepare_directory()
            self._remove_stale()
            listener = self._bind()
            try:
                wake_read, wake_write = os.pipe()
            except OSError as exc:
                listener.close()
                self._unlink()
                raise ControlError(f"cannot start the control channel: {exc.strerror}") from None
            self._wake_write = wake_write
            self._thread = threading.Thread(target=self._serve, args=(listener, wake_read),
                                            name="pca-control", daemon=True)
            self._thread.start()
        _log.info("control channel listening on %s", self._path)

    def close(self, timeout: float) -> None:
        """Stops accepting, waits up to ``timeout`` seconds for the thread to end, and removes the socket.

        A request being served is finished first, its reply sent. Idempotent; may be called from a command,
        in which case the thread ends once it has sent that command's reply.
        """
        with self._lock:
            self._closed = True
            wake_write, self._wake_write = self._wake_write, None
            thread = self._thread
        if wake_write is not None:
            os.close(wake_write)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                _log.warning("control channel: the server thread did not end within %.1fs", timeout)
        self._unlink()

    # --- Starting ----------------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        directory = self._path.parent
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        elif directory.stat().st_mode & 0o022:
            _log.warning("control channel: %s is writable by other users, who could replace the socket",
                         directory)

    def _remove_stale(self) -> None:
        try:
            mode = self._path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self._path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(min(self._timeout, 5.0))
        try:
            probe.connect(os.fspath(self._path))
        except FileNotFoundError:
            return  # removed meanwhile
        except ConnectionRefusedError:
            _log.info("control channel: removing the stale socket %s", self._path)
            self._path.unlink(missing_ok=True)
            return
        except TimeoutError:
            raise AgentAlreadyRunning(
                f"another agent is running: {self._path} is in use (it accepts no connection)") from None
        except OSError as exc:
            raise ControlError(
                f"cannot check the existing control socket {self._path}: {exc.strerror}") from None
        finally:
            probe.close()
        raise AgentAlreadyRunning(f"another agent is running: it answers on {self._path}")

    def _bind(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Linux gives the socket file the socket's own mode (less the umask): no moment at 0o755.
            os.fchmod(listener.fileno(), 0o600)
            listener.bind(os.fspath(self._path))
            os.chmod(self._path, 0o600)  # for the platforms where fchmod before bind does not apply
            info = os.stat(self._path)
            self._identity = (info.st_dev, info.st_ino)
            listener.listen(_BACKLOG)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            self._unlink()
            if exc.errno == errno.EADDRINUSE:
                raise AgentAlreadyRunning(
                    f"another agent is running: {self._path} was just created") from None
            raise ControlError(f"cannot create the control socket {self._path}: {exc.strerror}") from None
        return listener

    def _unlink(self) -> None:
        """Removes the socket file, only if it is still the one this server created."""
        identity = self._identity
        if identity is None:
            return
        try:
            info = self._path.lstat()
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == identity:
                self._path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _log.warning("control channel: cannot remove %s: %s", self._path, exc.strerror)
        self._identity = None

    # --- Serving (the pca-control thread) ----------------------------------------------------------------

    def _serve(self, listener: socket.socket, wake: int) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._closed:
                ready = {key.fd for key, _ in selector.select()}
                if wake in ready:
                    break
                try:
                    connection, _ = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client gave up between select and accept
                except OSError as exc:
                    _log.error("control channel: accept failed: %s", exc.strerror)
                    _wait_readable(wake, _ACCEPT_BACKOFF)  # e.g. EMFILE: the listener stays readable
                    continue
                with connection:
                    try:
                        self._handle(connection, wake)
                    except Exception:  # a bug here must not end the channel
                        _log.exception("control channel: unexpected error while serving a request")
        finally:
            selector.close()
            listener.close()
            os.close(wake)
            _log.debug("control channel: server thread ended")

    def _handle(self, connection: socket.socket, wake: int) -> None:
        connection.settimeout(self._timeout)
        deadline = time.monotonic() + self._timeout
        refusal = _refuse_peer(connection)
        if refusal is not None:
            _log.warning("control channel: %s", refusal)
            self._reply(connection, deadline, {"ok": False, "error": refusal})
            return
        try:
            line = _read_line(connection, wake, deadline)
        except _Stopped:
            self._reply(connection, deadline, {"ok": False, "error": "the agent is shutting down"})
            return
        except BadRequest as exc:
            _log.warning("control channel: %s", exc)
            self._reply(connection, deadline, {"ok": False, "error": str(exc)})
            return
        except OSError as exc:
            _log.debug("control channel: reading a request failed: %s", exc)
            return
        if not line:
            _log.debug("control channel: a connection closed without a request")
            return
        self._reply(connection, deadline, self._run(line))

    def _run(self, line: bytes) -> dict[str, Any]:
        try:
            name, arguments = parse_request(line)
        except BadRequest as exc:
            _log.warning("control channel: %s", exc)
            return {"ok": False, "error": str(exc)}
        command = self._commands.get(name)
        if command is None:
            known = ", ".join(sorted(self._commands)) or "none"
            return {"ok": False, "error": f"unknown command {name!r} (known: {known})"}
        _log.debug("control channel: running %r", name)
        try:
            result = command(arguments)
        except Exception as exc:
            message = str(exc) if isinstance(exc, PcaError) else f"{type(exc).__name__}: {exc}"
            _log.error("control command %r failed: %s", name, message)
            _log.debug("control command %r failed", name, exc_info=True)
            return {"ok": False, "error": message}
        if not isinstance(result, dict):
            _log.error("control command %r returned %s, not a dict", name, type(result).__name__)
            return {"ok": False, "error": f"command {name!r} returned no result object (an agent bug)"}
        return {"ok": True, "result": result}

    def _reply(self, connection: socket.socket, deadline: float, reply: dict[str, Any]) -> None:
        try:
            data = json.dumps(reply).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            _log.error("control channel: the reply cannot be written as JSON: %s", exc)
            error = {"ok": False, "error": f"the agent's reply is not JSON ({exc})"}
            data = json.dumps(error).encode() + b"\n"
        try:
            connection.settimeout(max(deadline - time.monotonic(), 0.001))
            connection.sendall(data)
        except OSError as exc:  # the client left or stopped reading; nothing to do for it
            _log.debug("control channel: sending a reply failed: %s", exc)


class _Stopped(Exception):
    """The server was closed while a request was being read."""


def _refuse_peer(connection: socket.socket) -> str | None:
    """Returns why the peer may not use the channel, or None when it may (its own user, or root)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the socket's mode is the only guard
        return None
    try:
        _pid, uid, _gid = _PEERCRED.unpack(connection.getsockopt(socket.SOL_SOCKET, option, _PEERCRED.size))
    except OSError as exc:
        return f"cannot identify the peer: {exc.strerror}"
    if uid in (0, os.geteuid()):
        return None
    return f"permission denied: uid {uid} may not use the agent's control channel (only uid {os.geteuid()} " \
           "and root may)"


def _wait_readable(fd: int, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def _read_line(connection: socket.socket, wake: int, deadline: float) -> bytes:
    """Reads one request line (or what precedes EOF), watching ``wake`` so that close() is not held up."""
    buffer = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BadRequest("timed out waiting for the request")
            ready = {key.fd for key, _ in selector.select(remaining)}
            if wake in ready:
                raise _Stopped
            if not ready:
                continue
            chunk = connection.recv(MAX_REQUEST_BYTES - len(buffer))  # never more than the limit in all
            if not chunk:
                return bytes(buffer)
            newline = chunk.find(b"\n")
            if newline >= 0:
                return bytes(buffer + chunk[:newline])
            buffer += chunk
            if len(buffer) >= MAX_REQUEST_BYTES:
                raise BadRequest(f"request too large (more than {MAX_REQUEST_BYTES} bytes)")
