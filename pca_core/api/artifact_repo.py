"""The ArtifactRepo contract: keeps a directory in sync with a remote repository."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from pca_core.api.errors import ArtifactSyncError
from pca_core.api.plugin import Capability, Plugin
from pca_core.api.secrets import Secret
from pca_core.api.settings import ArtifactsConfig


@dataclass(frozen=True, slots=True)
class RepoSpec:
    """Which remote repository goes into which local directory.

    Attributes:
        url: the remote, without credentials.
        path: the local working directory.
        branch: the branch to follow; None means the remote's default branch.
        username: the user for the remote, if it needs one.
        password: the password or token, given to the client library directly and never written anywhere.
        tenant_id: the tenant the repository belongs to.
    """

    url: str
    path: str
    branch: str | None = None
    username: str | None = None
    password: Secret | None = None
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What a sync did.

    Attributes:
        changed: whether the working directory changed.
        revision: the revision checked out after the sync.
        previous: the revision checked out before it: None for a first checkout, ``revision`` itself when
            nothing changed.
    """

    changed: bool
    revision: str | None
    previous: str | None


class ArtifactRepo(Plugin, abc.ABC):
    """Keeps a directory in sync with a remote repository.

    The contract an artifact repository plugin provides:

    - :meth:`sync` is idempotent: with nothing new on the remote it transfers nothing and reports
      ``changed=False``. A failed sync leaves the working directory as it was and raises
      :class:`pca_core.api.errors.ArtifactSyncError`.
    - Credentials are handed to the client library directly: never placed in a URL that is logged or
      written to disk, nor in an error message.
    - The core never runs two operations on the same ``spec.path`` at once; operations on different
      paths may run concurrently, from different threads.
    - :meth:`commit_and_push` is offered with :attr:`Capability.PUSH`, remotes that need a user name and
      password with :attr:`Capability.CREDENTIALS`.

    Args:
        config: the core's artifact settings.
        options: the plugin's own options, validated against :attr:`Options`.
    """

    known_capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PUSH,
                                                                     Capability.CREDENTIALS})

    def __init__(self, config: ArtifactsConfig, options: Any) -> None:
        self.config = config
        self.options = options

    @abc.abstractmethod
    def sync(self, spec: RepoSpec) -> SyncResult:
        """Brings ``spec.path`` up to date with the remote, cloning it the first time."""

    def commit_and_push(self, spec: RepoSpec, message: str) -> str | None:
        """Commits local changes and pushes them; returns the new revision, or None if nothing changed.

        The default, for a plugin without :attr:`Capability.PUSH`, refuses.

        Raises:
            ArtifactSyncError: the push failed (the local changes are kept) or is not offered.
        """
        raise ArtifactSyncError(type(self).__name__, "this artifact repository does not push changes")

    @abc.abstractmethod
    def remove(self, spec: RepoSpec) -> None:
        """Forgets the repository and deletes its working directory."""

    def current_revision(self, spec: RepoSpec) -> str | None:
        """The revision checked out at ``spec.path``, or None when there is no checkout there.

        The core uses it to tell a first checkout from a later one (initial backup, signup removal); the
        default knows of no checkout.
        """
        return None

    def check_remote(self, spec: RepoSpec, *, timeout: float | None = None) -> str | None:
        """Checks that the remote of ``spec`` can be reached and read, as ``git ls-remote`` does.

        For ``pca config check --connect``: nothing is transferred and nothing is written locally, and
        the check ends within ``timeout`` seconds (None: the plugin's own connection timeout).

        Returns:
            What the remote showed, for a person (``branch main at 3f2a1c9``); None when the plugin offers
            no such check, which is the default: ``--connect`` then reports the remote as not checked.

        Raises:
            ArtifactSyncError: the remote cannot be reached, refuses the credentials, is not a repository
                or lacks ``spec.branch``; the message names the remote, without credentials.
        """
        return None

    def close(self) -> None:
        """Releases what the plugin holds; the default holds nothing."""
