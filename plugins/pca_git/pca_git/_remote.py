"""Reaching a remote repository: a dulwich client per URL, credentials given to it and nowhere else.

Supported remotes: ``git://``, ``http://`` and ``https://`` (basic credentials), ``file://`` and local
paths, all served in this process; ``ssh://`` and ``user@host:path`` through dulwich's SSH vendor, which
runs the system ``ssh`` client. Nothing here ever runs ``git``, and no user or system git configuration
is read: its proxy commands, credential helpers and URL rewrites would fork programs or change where the
agent connects.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urlsplit

from dulwich.client import (
    GitClient,
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    LocalGitClient,
    SSHGitClient,
    TCPGitClient,
    Urllib3HttpGitClient,
    get_transport_and_path,
)
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.protocol import DEFAULT_GIT_PROTOCOL_VERSION_FETCH, DEFAULT_GIT_PROTOCOL_VERSION_SEND, Protocol
from dulwich.repo import Repo

from pca_core.api import MASK, ArtifactSyncError, split_credentials

PLUGIN = "git"
# What a client raises when the remote cannot be reached, refuses, or answers nonsense.
_REMOTE_ERRORS = (OSError, GitProtocolError, NotGitRepository, HTTPUnauthorized, HTTPProxyUnauthorized,
                  ValueError, KeyError)
HEAD = b"HEAD"
BRANCH_PREFIX = b"refs/heads/"


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetch found: the branch followed, its revision on the remote, and whether objects came."""

    branch: bytes
    target: bytes
    transferred: bool


class Remote:
    """One remote repository and how to reach it.

    Args:
        url: the remote; credentials in it are taken out and used as if given separately.
        username: the user, if the remote needs one.
        password: the password or token, handed to the HTTP client and never written anywhere.
        timeout: seconds allowed to connect, and for each read, on git:// and http(s)://.
        ssh_key_file: a private key for ``ssh://`` remotes.
    """

    def __init__(self, url: str, username: str | None, password: str | None, *, timeout: float,
                 ssh_key_file: str | None = None) -> None:
        clean, url_user, url_password = split_credentials(url)
        self.url = clean
        self.username = username or url_user
        self._password = password if password is not None else url_password
        self.timeout = timeout
        self.ssh_key_file = ssh_key_file

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    def scrub(self, text: str) -> str:
        """``text`` with the password (and its URL-encoded forms) replaced by ``***``."""
        if self._password:
            for form in {self._password, quote(self._password, safe="")}:
                text = text.replace(form, MASK)
        return text

    def client(self) -> tuple[GitClient, str]:
        """A new dulwich client for this remote, and the path to ask it for.

        Raises:
            ArtifactSyncError: the URL's scheme is not supported.
        """
        parts = urlsplit(self.url)
        scheme = parts.scheme
        if scheme == "git":
            if not parts.hostname:
                raise self.error("reach", "a git:// URL needs a host")
            return _TimeoutTCPGitClient(parts.hostname, parts.port, self.timeout), parts.path
        if scheme in ("http", "https"):
            client = Urllib3HttpGitClient(self.url, config=None, username=self.username,
                                          password=self._password, timeout=self.timeout)
            return client, parts.path
        if scheme in ("", "file", "ssh", "git+ssh"):  # a local path, or scp-like user@host:path
            client, path = get_transport_and_path(self.url, config=None, username=self.username,
                                                  key_filename=self.ssh_key_file)
            if isinstance(client, LocalGitClient | SSHGitClient):
                return client, path
        raise ArtifactSyncError(PLUGIN, f"{self.url}: unsupported remote (expected git://, http(s)://, "
                                        f"file://, a local path or ssh://)")

    def error(self, action: str, reason: object) -> ArtifactSyncError:
        """An ArtifactSyncError saying ``action`` on this remote failed, the password scrubbed out."""
        return ArtifactSyncError(PLUGIN, self.scrub(f"{action} {self.url} failed: {describe(reason)}"))

    def fetch(self, repo: Repo, branch: bytes | None) -> Fetched:
        """Fetches ``branch`` (else the remote's default branch) into ``repo``, only if it is missing.

        Nothing is transferred when the branch's revision is already in the repository.

        Raises:
            ArtifactSyncError: the remote cannot be reached or read, or has no such branch.
        """
        client, path = self.client()
        found: dict[str, bytes] = {}
        wanted: list[bytes] = []

        def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
            sha = refs.get(BRANCH_PREFIX + branch if branch is not None else HEAD)
            if sha is not None:
                found["target"] = sha
                if sha not in repo.object_store:
                    wanted.append(sha)
            return list(wanted)

        prefixes = [BRANCH_PREFIX + branch] if branch is not None else [HEAD, BRANCH_PREFIX]
        try:
            result = client.fetch(path, repo, determine_wants=determine_wants, ref_prefix=prefixes)
        except _REMOTE_ERRORS as exc:
            raise self.error("fetch from", exc) from None
        finally:
            client.close()
        target = found.get("target")
        if target is None:
            what = f"branch {branch.decode(errors='replace')}" if branch is not None else "default branch"
            raise self.error("fetch from", f"the remote has no {what}")
        if branch is None:
            branch = _default_branch(result.refs, result.symrefs, target)
            if branch is None:
                raise self.error("fetch from", "the remote does not say which branch is its default; "
                                               "set artifacts.branch")
        return Fetched(branch, target, transferred=bool(wanted))

    def lookup(self, branch: bytes | None) -> tuple[bytes, bytes]:
        """The branch followed (``branch``, else the remote's default branch) and its revision on the remote.

        Reads the remote's refs only, as ``git ls-remote``: no object is transferred.

        Raises:
            ArtifactSyncError: the remote cannot be reached or read, or has no such branch.
        """
        client, path = self.client()
        try:
            result = client.get_refs(path)
        except _REMOTE_ERRORS as exc:
            raise self.error("read", exc) from None
        finally:
            client.close()
        refs = {name: sha for name, sha in result.refs.items() if sha is not None}
        if branch is not None:
            target = refs.get(BRANCH_PREFIX + branch)
            if target is None:
                raise self.error("read", f"the remote has no branch {branch.decode(errors='replace')}")
            return branch, target
        head = refs.get(HEAD)
        if head is None:
            raise self.error("read", "the remote has no default branch (an empty repository?)")
        default = _default_branch(refs, result.symrefs, head)
        if default is None:
            raise self.error("read", "the remote does not say which branch is its default; "
                                     "set artifacts.branch")
        return default, head

    def push(self, repo: Repo, branch: bytes, new: bytes, allowed: Callable[[bytes | None], bool]) -> None:
        """Pushes ``new`` to ``branch`` if ``allowed(remote's current revision)``.

        Raises:
            ArtifactSyncError: the remote refused, moved on (``allowed`` said no), or could not be reached.
        """
        client, path = self.client()
        ref = BRANCH_PREFIX + branch
        refused: list[str] = []

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
            current = refs.get(ref)
            if not allowed(current):
                refused.append("the remote branch has commits this checkout does not have")
                return refs
            return {**refs, ref: new}

        def pack_data(have: Any, want: Any, *, ofs_delta: bool = False,
                      progress: Callable[..., None] | None = None) -> Any:
            return repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

        try:
            result = client.send_pack(path.encode(), update_refs, generate_pack_data=pack_data)
        except _REMOTE_ERRORS as exc:
            raise self.error("push to", exc) from None
        finally:
            client.close()
        if refused:
            raise self.error("push to", refused[0])
        errors = [f"{name.decode(errors='replace')}: {why}" for name, why in (result.ref_status or {}).items()
                  if why]
        if errors:
            raise self.error("push to", "; ".join(errors))


def _default_branch(refs: Mapping[bytes, bytes | None], symrefs: Mapping[bytes, bytes],
                    head: bytes) -> bytes | None:
    target = symrefs.get(HEAD)
    if target is not None and target.startswith(BRANCH_PREFIX):
        return target[len(BRANCH_PREFIX):]
    # An old server that does not advertise symrefs: the one branch at HEAD's revision, if only one.
    candidates = [name[len(BRANCH_PREFIX):] for name, sha in refs.items()
                  if name.startswith(BRANCH_PREFIX) and sha == head]
    return candidates[0] if len(candidates) == 1 else None


def describe(reason: object) -> str:
    """A short, human reason from an exception (or text); dulwich's own messages are often empty."""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, HangupException):
        return "the remote hung up"
    if isinstance(reason, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(reason, NotGitRepository):
        return "not a git repository"
    if isinstance(reason, HTTPUnauthorized | HTTPProxyUnauthorized):
        return "the credentials were refused (HTTP 401)" if isinstance(reason, HTTPUnauthorized) \
            else "the proxy refused the credentials (HTTP 407)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason).strip()
    name = type(reason).__name__
    return f"{name}: {text}" if text else name


class _TimeoutTCPGitClient(TCPGitClient):
    """dulwich's git:// client, with a timeout on connecting and on every read.

    dulwich's own client connects with a blocking socket and no timeout; this one builds the same request
    over ``socket.create_connection(..., timeout)``.
    """

    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port)
        self._timeout = timeout

    def _connect(self, cmd: bytes, path: str | bytes, protocol_version: int | None = None,
                 ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        if not isinstance(path, bytes):
            path = path.encode(self._remote_path_encoding)
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = sock.makefile("rb", -1)
        wfile = sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def shutdown_write() -> None:
            wfile.flush()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        proto = Protocol(rfile.read, wfile.write, close, report_activity=self._report_activity,
                         shutdown_write=shutdown_write)
        if path.startswith(b"/~"):
            path = path[1:]
        if cmd == b"upload-pack":
            self.protocol_version = (DEFAULT_GIT_PROTOCOL_VERSION_FETCH if protocol_version is None
                                     else protocol_version)
        else:
            self.protocol_version = DEFAULT_GIT_PROTOCOL_VERSION_SEND
        version = b"\0\0version=%d\0" % self.protocol_version \
            if cmd == b"upload-pack" and self.protocol_version == 2 else b""
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + version)

        def can_read() -> bool:
            return bool(select.select([sock.fileno()], [], [], 0)[0])

        return proto, can_read, None
