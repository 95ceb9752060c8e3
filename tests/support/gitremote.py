"""The conformance suite's remote repository, on the test git servers of :mod:`tests.support.gitserver`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pca_core.testing import Credentials, RepoRemote
from tests.support.gitserver import GitDaemon, HttpGitServer, Upstream
from tests.support.ports import free_port

FIRST = {"FIRST": b"the fixture's own first revision\n"}


class GitRemote(RepoRemote):
    """A repository of its own, with one revision, on a test git server that other tests may share.

    Args:
        server: a running :class:`GitDaemon` (git://) or :class:`HttpGitServer` (http:// with basic auth)
            serving ``base``.
        base: the directory the server serves.
        name: a name for the repository; made unique.
        credentials: what ``server`` asks for, if anything.
    """

    def __init__(self, server: GitDaemon | HttpGitServer, base: Path, name: str,
                 credentials: Credentials | None = None) -> None:
        self.server = server
        self.upstream = Upstream(base, f"{name[:40]}-{time.monotonic_ns()}.git", FIRST)
        self.url = server.url(self.upstream.name)
        parts = urlsplit(self.url)
        self.dead_url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{free_port()}"))
        self.credentials = credentials

    def commit(self, files: Mapping[str, bytes | None], message: str) -> str:
        """Commits with the ``git`` program in a clone of the served repository, and pushes to it."""
        return self.upstream.commit(files, message)

    def files(self) -> dict[str, bytes]:
        """The files of the default branch, read with the ``git`` program."""
        return self.upstream.files()

    def head(self) -> str:
        """The default branch's commit id."""
        return self.upstream.revision()

    def start(self) -> None:
        """Starts the server again on its port."""
        self.server.start()

    def stop(self) -> None:
        """Stops the server: every repository it serves is unreachable until :meth:`start`."""
        self.server.stop()
