"""The remote repository the artifact repository conformance suite needs, which a plugin's tests provide."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Credentials", "RepoRemote"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """The user name and password a remote repository asks for."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"


class RepoRemote(abc.ABC):
    """A remote repository the tests own: they commit to it, read it, and take its server down.

    A plugin's tests implement one for their kind of repository (a git daemon, an HTTP server with basic
    auth, a Subversion server...). The fixture that provides it gives each test a repository of its own
    (a fresh one, or one nothing else uses), with at least one revision on the branch it serves; the
    server behind it may be shared with other tests, on a free port. The conformance suite stops and
    starts the server in between, and leaves it running after every test.

    Attributes:
        url: the repository's URL as a :class:`~pca_core.api.RepoSpec` names it: without credentials.
        dead_url: a URL of the same scheme where no server answers (a free port nobody listens on).
        credentials: what the server asks for, or None when it asks for nothing.
    """

    url: str
    dead_url: str
    credentials: Credentials | None = None

    @abc.abstractmethod
    def commit(self, files: Mapping[str, bytes | None], message: str) -> str:
        """Makes a new revision on the branch from the current one and returns its id.

        Args:
            files: paths relative to the repository's root, with ``/`` as separator, each with its new
                content, or None to delete it; other files are kept.
            message: the revision's message.

        It works while the server is stopped, and after a plugin pushed revisions of its own.
        """

    @abc.abstractmethod
    def files(self) -> dict[str, bytes]:
        """Every file of the branch's latest revision: path (relative, ``/``-separated) to content."""

    @abc.abstractmethod
    def head(self) -> str:
        """The id of the branch's latest revision, as the plugin reports revisions."""

    @abc.abstractmethod
    def start(self) -> None:
        """Starts the server again, on the same address, and returns once it accepts connections.

        The suite calls it only after :meth:`stop`; doing nothing when the server is already running makes
        it safe to call from a fixture too.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stops the server and returns once it no longer accepts connections; idempotent."""
