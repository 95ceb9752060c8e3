"""Git servers for tests, and upstream repositories changed with the git CLI.

- :class:`GitDaemon`: ``git daemon`` (git://, fetch and push) as a child process on a free port.
- :class:`HttpGitServer`: dulwich's smart-HTTP WSGI app on wsgiref, in a thread, behind basic auth.
- :class:`CuttingProxy`: a TCP proxy in front of the daemon that hangs up after N bytes of the answer (a
  server that disappears mid-fetch).
- :class:`Upstream`: a bare repository under the servers' base directory, with a working clone that
  commits and pushes through the ``git`` CLI.

Only these test servers and fixtures use the ``git`` binary; the agent never does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.support.ports import accepts, free_port
from tests.support.waiting import wait_until

IDENTITY = {"GIT_AUTHOR_NAME": "Upstream", "GIT_AUTHOR_EMAIL": "upstream@example.org",
            "GIT_COMMITTER_NAME": "Upstream", "GIT_COMMITTER_EMAIL": "upstream@example.org"}


def git_binary() -> str:
    """The ``git`` program, needed by the test servers and fixtures only.

    Raises:
        RuntimeError: it is not installed (install the ``git`` package: ``apt-get install git``).
    """
    found = shutil.which("git")
    if found is None:
        raise RuntimeError("the git binary is needed by the test git server and the repository fixtures "
                           "(not by the agent): install it, e.g. apt-get install git")
    return found


def git_env() -> dict[str, str]:
    """An environment for the git CLI that reads no user or system configuration."""
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent", "LANG": "C",
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", **IDENTITY}


def _run_git(args: tuple[str, ...], cwd: Path | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([git_binary(), *args], cwd=cwd, env=git_env(), capture_output=True, timeout=60)


def git_bytes(*args: str, cwd: Path | None = None) -> bytes:
    """Runs ``git ARGS`` and returns its stdout as it is; raises with its stderr when it fails."""
    done = _run_git(args, cwd)
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args)} failed ({done.returncode}): {stderr}")
    return done.stdout


def git(*args: str, cwd: Path | None = None) -> str:
    """Runs ``git ARGS`` and returns its stdout as stripped text; raises with its stderr when it fails."""
    return git_bytes(*args, cwd=cwd).decode().strip()


def has_ref(ref: str, cwd: Path) -> bool:
    """Whether the repository at ``cwd`` has ``ref``."""
    return _run_git(("rev-parse", "--verify", "--quiet", ref), cwd).returncode == 0


class Upstream:
    """A bare repository ``<base>/<name>`` and a working clone to change it with.

    Args:
        base: the servers' base directory.
        name: the repository's name, e.g. ``app.git``.
        files: the first commit's files, path to content (text is written as UTF-8).
        branch: the default branch.
    """

    def __init__(self, base: Path, name: str, files: Mapping[str, str | bytes], branch: str = "main") -> None:
        self.name = name
        self.bare = base / name
        self.work = base / f".{name}.work"
        self.branch = branch
        git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.bare))
        git("init", "--quiet", f"--initial-branch={branch}", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.commit(files, "initial")

    def commit(self, files: Mapping[str, str | bytes | None], message: str = "change", *,
               branch: str | None = None, push: bool = True) -> str:
        """Writes (text or bytes) or deletes (None) files, commits, pushes; returns the new revision.

        The commit goes on top of the bare repository's branch, which the agent may have pushed to; a new
        branch starts from the default branch.
        """
        branch = branch or self.branch
        self._follow(branch)
        for path, content in files.items():
            target = self.work / path
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode() if isinstance(content, str) else content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def _follow(self, branch: str) -> None:
        """Puts the working clone on ``branch`` as the bare repository has it (nothing there yet: as is)."""
        git("fetch", "--quiet", "origin", cwd=self.work)
        for start in (branch, self.branch):
            if has_ref(f"refs/remotes/origin/{start}", self.work):
                git("checkout", "--quiet", "-B", branch, f"origin/{start}", cwd=self.work)
                return

    def rewrite(self, files: dict[str, str], message: str = "rewritten") -> str:
        """Replaces the branch's history with one new root commit (a force push); returns it."""
        git("checkout", "--quiet", "--orphan", "rewrite", cwd=self.work)
        git("rm", "--quiet", "-r", "--cached", ".", cwd=self.work)
        for entry in self.work.iterdir():
            if entry.name != ".git":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        git("checkout", "--quiet", "-B", self.branch, cwd=self.work)
        return self.revision()

    def revision(self, branch: str | None = None) -> str:
        """The bare repository's revision of ``branch``."""
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.bare)

    def files(self, branch: str | None = None) -> dict[str, bytes]:
        """Every file at the bare repository's ``branch``, path to content."""
        listing = git_bytes("ls-tree", "-r", "-z", "--full-tree", f"refs/heads/{branch or self.branch}",
                            cwd=self.bare)
        files = {}
        for entry in filter(None, listing.split(b"\0")):
            meta, path = entry.split(b"\t", 1)
            _mode, kind, sha = meta.split()
            if kind == b"blob":
                files[path.decode()] = git_bytes("cat-file", "blob", sha.decode(), cwd=self.bare)
        return files

    def show(self, path: str, branch: str | None = None) -> str:
        """A file's text at the bare repository's ``branch``."""
        return git("show", f"{branch or self.branch}:{path}", cwd=self.bare)

    def show_tree(self, branch: str | None = None) -> list[str]:
        """Every file path at the bare repository's ``branch``."""
        return git("ls-tree", "-r", "--name-only", branch or self.branch, cwd=self.bare).splitlines()

    def log(self, branch: str | None = None) -> str:
        """``author <email>|subject`` of the branch's last commit."""
        return git("log", "-1", "--format=%an <%ae>|%s", branch or self.branch, cwd=self.bare)

    def set_default_branch(self, branch: str) -> None:
        git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=self.bare)


class GitDaemon:
    """``git daemon`` serving every repository under ``base`` over git:// (fetch and push)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = base.parent / f"{base.name}-daemon.log"

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitDaemon:
        """Starts the daemon, on its former port if it ran before; a running daemon is left as it is."""
        git_binary()
        if self.process is not None and self.process.poll() is None:
            return self
        again = self.port != 0  # a restart: the same port, so that the URLs given out stay valid
        for _attempt in range(5):
            if not again:
                self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [git_binary(), "daemon", "--reuseaddr", "--export-all", f"--base-path={self.base}",
                     "--enable=receive-pack", "--informative-errors", "--listen=127.0.0.1",
                     f"--port={self.port}", str(self.base)],
                    env=git_env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            if wait_until(lambda: accepts(self.port) or self.process.poll() is not None, timeout=10) \
                    and self.process.poll() is None:
                return self
            self.stop()  # the port was taken meanwhile: try another (or, on a restart, again)
        raise RuntimeError(f"git daemon did not start on port {self.port}; see {self.log}")

    def stop(self) -> None:
        """Stops the daemon and waits for it to exit; idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> GitDaemon:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class HttpGitServer:
    """dulwich's smart-HTTP server for every repository under ``base``, with basic auth.

    Attributes:
        unauthorized: how many requests came without the right credentials.
        authorizations: every Authorization header received (to check what a client sent).
    """

    def __init__(self, base: Path, username: str, password: str) -> None:
        from dulwich.server import FileSystemBackend
        from dulwich.web import make_wsgi_chain

        class Backend(FileSystemBackend):
            # The web app passes "/name.git", which os.path.join would take as absolute, outside the root.
            def open_repository(self, path):
                return super().open_repository(os.fsdecode(path).lstrip("/"))

        self.base = base
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.unauthorized = 0
        self.authorizations: list[str] = []
        self._app = make_wsgi_chain(Backend(str(base)))
        self._server: WSGIServer | None = self._bind(0)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _bind(self, port: int) -> WSGIServer:
        return make_server("127.0.0.1", port, self._auth, server_class=_ThreadingWSGIServer,
                           handler_class=_QuietHandler)

    def _auth(self, environ: dict, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header:
            self.authorizations.append(header)
        if header != self.expected:
            self.unauthorized += 1
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'),
                                                ("Content-Type", "text/plain")])
            return [b"authentication required\n"]
        return self._app(environ, start_response)

    def start(self) -> HttpGitServer:
        """Serves (again, on the same port after :meth:`stop`); a running server is left as it is."""
        if self._thread is not None:
            return self
        if self._server is None:
            self._server = self._bind(self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-git", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the port; idempotent."""
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()
        self._server = None

    def __enter__(self) -> HttpGitServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class CuttingProxy:
    """A TCP proxy to ``127.0.0.1:<upstream>`` that hangs up once ``limit`` bytes of the answer passed.

    Requests flow freely; the answer is cut (both sockets closed) after ``limit`` bytes, as a server
    that disappears in the middle of sending a pack. ``limit=None`` passes everything.
    """

    def __init__(self, upstream: int, limit: int | None) -> None:
        self.upstream = upstream
        self.limit = limit
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            except OSError:
                client.close()  # the upstream is gone: so is the proxy's answer
                continue
            server.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.limit), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        passed = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if limit is not None and passed + len(data) > limit:
                    sink.sendall(data[:limit - passed])
                    self.cuts += 1
                    break
                sink.sendall(data)
                passed += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stops listening; the accepting thread has ended when this returns."""
        self._closed = True
        # close() alone does not wake a thread blocked in accept() on Linux, and the port would stay
        # bound (and answering) until the next connection: shutdown() wakes it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._listener.close()
