"""The control channel's server: one thread, serving the agent's commands to its owner and root."""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pca_core.agent.control.http import MAX_REQUEST_BYTES as MAX_HTTP_REQUEST_BYTES
from pca_core.agent.control.http import HttpService
from pca_core.agent.control.protocol import (
    MAX_CONNECTIONS,
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
_CLOSING_GRACE = 2.0  # seconds close() leaves the replies still being sent
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlServer:
    """Serves control commands on a Unix socket, on one daemon thread named ``pca-control``.

    The socket is created with mode 0o600 (and its directory with 0o700 when the server creates it), and each
    connection's peer is checked with ``SO_PEERCRED`` where the platform has it: only the agent's own user
    and root are served.

    The thread serves up to :data:`MAX_CONNECTIONS` connections at once, reading their requests and
    writing their replies as each is ready, so a client that is slow or silent holds up no other; one more
    connection is answered at once that there are too many. Each connection has ``timeout`` seconds from
    being accepted to send its request and take the reply.

    With ``http``, the same thread also serves the operator's HTTP endpoint (:mod:`.http`) on a TCP port:
    its connections count towards the same bound, and are not checked with ``SO_PEERCRED`` (the endpoint
    is read-only; keep it on a private address).

    Commands and routes run on the server thread, one at a time, so they must return quickly: the agent's
    commands schedule their work and answer at once. A command may ask the agent to stop (``maintenance on
    --stop``): its reply is still sent, even when :meth:`close` is called meanwhile from another thread, or
    from the command itself.

    Args:
        path: where the socket is created (at most 107 bytes on Linux).
        commands: the commands by name.
        timeout: seconds a connection may take to send its request, and to take the reply.
        http: the HTTP endpoint to serve too; None serves the socket only.
    """

    def __init__(self, path: Path, commands: Mapping[str, Command], *, timeout: float = 30.0,
                 http: HttpService | None = None) -> None:
        self._path = Path(path)
        self._commands = dict(commands)
        self._http = http
        self._timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._wake_write: int | None = None  # closed by close(): the thread's end then reads EOF
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we created
        self._crowded = False  # connections were refused for the bound; logged once until one is accepted

    @property
    def path(self) -> Path:
        """The socket's path."""
        return self._path

    def start(self) -> None:
        """Creates the socket and starts serving.

        Creates the parent directory (mode 0o700) when it is missing, refuses one that its group or others
        may write to, and replaces a stale socket file (one that nobody answers on).

        Raises:
            AgentAlreadyRunning: an agent already answers on the socket.
            ControlError: the path is too long for a Unix socket, is something other than a socket, or the
                socket cannot be created; or its directory is writable by other users than its owner; or
                the HTTP endpoint's address cannot be listened on.
            RuntimeError: the server was started before or closed.
        """
        with self._lock:
            if self._thread is not None or self._closed:
                raise RuntimeError("control server already started or closed")
            check_length(self._path)
            self._prepare_directory()
            self._remove_stale()
            listeners = [self._bind()]
            try:
                if self._http is not None:
                    listeners.append(self._http.listen())
                wake_read, wake_write = os.pipe()
            except (OSError, ControlError) as exc:
                for listener in listeners:
                    listener.close()
                self._unlink()
                if isinstance(exc, ControlError):
                    raise
                raise ControlError(f"cannot start the control channel: {exc.strerror}") from None
            self._wake_write = wake_write
            self._thread = threading.Thread(target=self._serve, args=(listeners, wake_read),
                                            name="pca-control", daemon=True)
            self._thread.start()
        _log.info("control channel listening on %s", self._path)
        if self._http is not None:
            host, port = self._http.address
            _log.info("http endpoint listening on %s:%d (%s)", host, port,
                      ", ".join(sorted(self._http.routes)))

    def close(self, timeout: float) -> None:
        """Stops accepting, waits up to ``timeout`` seconds for the thread to end, and removes the socket.

        Replies already due are still sent (for up to 2 seconds), and a request still being read is answered
        that the agent is shutting down. Idempotent; may be called from a command, in which case the thread
        ends once it has sent that command's reply.
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
            return
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o022:  # group or world: the sticky bit would not stop them taking the name first
            raise ControlError(
                f"the control channel's directory {directory} is writable by other users (mode {mode:04o}), "
                f"who could replace the agent's socket; make it writable by its owner only "
                f"(chmod go-w {directory}) or choose another agent.state_dir")

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

    def _serve(self, listeners: list[socket.socket], wake: int) -> None:
        """The thread: the control socket's listener first, then the HTTP endpoint's, if any."""
        selector = selectors.DefaultSelector()
        for listener in listeners:
            selector.register(listener, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        accepting = True
        resting: dict[socket.socket, float] = {}  # listeners whose accept() failed, until when they rest
        try:
            while True:
                if accepting and self._closed:
                    accepting = False
                    resting.clear()
                    self._stop_accepting(selector, listeners, wake)
                if not accepting and not _connections(selector):
                    break
                now = time.monotonic()
                for listener, until in list(resting.items()):
                    if now >= until:
                        del resting[listener]
                        selector.register(listener, selectors.EVENT_READ)
                deadlines = [c.deadline for c in _connections(selector)] + list(resting.values())
                timeout = max(min(deadlines) - now, 0.0) if deadlines else None
                for key, events in selector.select(timeout):
                    if isinstance(key.data, _Connection):
                        self._step(selector, key.data, events)
                    elif key.fileobj in listeners:
                        listener = key.fileobj
                        if not self._accept(selector, listener, http=listener is not listeners[0]):
                            selector.unregister(listener)  # e.g. EMFILE: the listener stays readable
                            resting[listener] = time.monotonic() + _ACCEPT_BACKOFF
                self._expire(selector)
        finally:
            for connection in _connections(selector):
                _close(connection.sock)
            selector.close()
            for listener in listeners:
                listener.close()
            os.close(wake)
            _log.debug("control channel: server thread ended")

    def _accept(self, selector: selectors.BaseSelector, listener: socket.socket, *, http: bool,
                backlog: bool = False) -> bool:
        """Accepts one connection, or refuses it with a reply; False when accept() itself failed.

        With ``backlog``, False also when no connection is waiting.
        """
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return not backlog  # the client gave up between select and accept
        except OSError as exc:
            _log.error("control channel: accept failed: %s", exc.strerror)
            return False
        sock.setblocking(False)
        refusal = None if http else _refuse_peer(sock)
        if refusal is None and len(_connections(selector)) >= MAX_CONNECTIONS:
            refusal = f"too many control connections at once (at most {MAX_CONNECTIONS}); try again shortly"
            if not self._crowded:
                self._crowded = True
                _log.warning("control channel: %s connections are open; refusing more", MAX_CONNECTIONS)
        elif refusal is not None:
            _log.warning("control channel: %s", refusal)
        if refusal is not None:
            _send_once(sock, HttpService.unavailable() if http else _encode({"ok": False, "error": refusal}))
            _close(sock)
            return True
        self._crowded = False
        connection = _Connection(sock, time.monotonic() + self._timeout, http=http)
        selector.register(sock, selectors.EVENT_READ, connection)
        return True

    def _stop_accepting(self, selector: selectors.BaseSelector, listeners: list[socket.socket],
                        wake: int) -> None:
        """On close: no new connection; a request still being read is answered that the agent stops.

        Connections the kernel completed but the thread had not accepted yet are accepted first, so that
        they are answered too rather than reset when the listener closes.
        """
        for listener in listeners:
            while len(_connections(selector)) < MAX_CONNECTIONS and \
                    self._accept(selector, listener, http=listener is not listeners[0], backlog=True):
                pass
        for fileobj in (*listeners, wake):
            with contextlib.suppress(KeyError):  # a listener is not registered during an accept backoff
                selector.unregister(fileobj)
        grace = time.monotonic() + _CLOSING_GRACE
        for connection in _connections(selector):
            connection.deadline = min(connection.deadline, grace)
            if connection.reply is None:
                stopping = HttpService.unavailable() if connection.http else \
                    _encode({"ok": False, "error": "the agent is shutting down"})
                self._reply(selector, connection, stopping)

    def _step(self, selector: selectors.BaseSelector, connection: _Connection, events: int) -> None:
        """Reads from, or writes to, a connection that is ready for it."""
        try:
            if connection.reply is None:
                if events & selectors.EVENT_READ:
                    self._read(selector, connection)
            elif events & selectors.EVENT_WRITE:
                sent = connection.sock.send(connection.reply)
                connection.reply = connection.reply[sent:]
                if not connection.reply:
                    self._drop(selector, connection)
        except BlockingIOError:
            pass
        except OSError as exc:  # the client left or stopped reading; nothing to do for it
            _log.debug("control channel: a connection failed: %s", exc)
            self._drop(selector, connection)
        except Exception:  # a bug here must not end the channel
            _log.exception("control channel: unexpected error while serving a request")
            self._drop(selector, connection)

    def _read(self, selector: selectors.BaseSelector, connection: _Connection) -> None:
        if connection.http:
            self._read_http(selector, connection)
            return
        received = connection.received
        chunk = connection.sock.recv(MAX_REQUEST_BYTES - len(received))  # never more than the limit in all
        newline = chunk.find(b"\n")
        if newline >= 0:
            self._answer(selector, connection, self._run(bytes(received + chunk[:newline])))
        elif not chunk:
            if received:
                self._answer(selector, connection, self._run(bytes(received)))
            else:
                _log.debug("control channel: a connection closed without a request")
                self._drop(selector, connection)
        else:
            received += chunk
            if len(received) >= MAX_REQUEST_BYTES:
                error = f"request too large (more than {MAX_REQUEST_BYTES} bytes)"
                _log.warning("control channel: %s", error)
                self._answer(selector, connection, {"ok": False, "error": error})

    def _read_http(self, selector: selectors.BaseSelector, connection: _Connection) -> None:
        assert self._http is not None
        received = connection.received
        chunk = connection.sock.recv(MAX_HTTP_REQUEST_BYTES - len(received))
        received += chunk
        if HttpService.complete(received) or (not chunk and received):
            self._reply(selector, connection, self._http.answer(bytes(received)))
        elif not chunk:
            self._drop(selector, connection)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        """Ends the connections past their deadline; one still sending its request is told so."""
        now = time.monotonic()
        for connection in _connections(selector):
            if connection.deadline <= now:
                if connection.reply is None and not connection.http:
                    timed_out = {"ok": False, "error": "timed out waiting for the request"}
                    _send_once(connection.sock, _encode(timed_out))
                else:
                    _log.debug("control channel: a client did not take its reply in time")
                self._drop(selector, connection)

    @classmethod
    def _answer(cls, selector: selectors.BaseSelector, connection: _Connection,
                reply: dict[str, Any]) -> None:
        cls._reply(selector, connection, _encode(reply))

    @staticmethod
    def _reply(selector: selectors.BaseSelector, connection: _Connection, data: bytes) -> None:
        connection.reply = memoryview(data)
        selector.modify(connection.sock, selectors.EVENT_WRITE, connection)

    @staticmethod
    def _drop(selector: selectors.BaseSelector, connection: _Connection) -> None:
        selector.unregister(connection.sock)
        _close(connection.sock)

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


@dataclass
class _Connection:
    """A client being served: its request as read so far, then the rest of its reply to send."""

    sock: socket.socket
    deadline: float  # for reading the request and sending the reply
    received: bytearray = field(default_factory=bytearray)
    reply: memoryview | None = None
    http: bool = False  # a connection to the HTTP endpoint, not to the control socket


def _connections(selector: selectors.BaseSelector) -> list[_Connection]:
    return [key.data for key in selector.get_map().values() if isinstance(key.data, _Connection)]


def _encode(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        _log.error("control channel: the reply cannot be written as JSON: %s", exc)
        return json.dumps({"ok": False, "error": f"the agent's reply is not JSON ({exc})"}).encode() + b"\n"


def _send_once(sock: socket.socket, reply: bytes) -> None:
    """Sends a short reply without waiting: it fits in the buffer of a socket that was sent nothing yet."""
    try:
        sock.send(reply)
    except OSError as exc:
        _log.debug("control channel: sending a reply failed: %s", exc)


def _close(sock: socket.socket) -> None:
    """Closes a connection after discarding what it sent and was not read (up to 64 KiB, without waiting).

    Closing a socket with unread input makes the kernel reset the connection, and a reset can discard the
    reply the client has not read yet: a request refused or cut short would lose its answer.
    """
    try:
        for _ in range(16):
            if not sock.recv(4096):
                break
    except OSError:  # BlockingIOError: nothing more has arrived; or the client has gone
        pass
    sock.close()


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
