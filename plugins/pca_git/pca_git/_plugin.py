"""The ``git`` artifact repository: clone, fetch and fast-forward, commit and push, all through dulwich."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dulwich.errors import NotGitRepository
from dulwich.graph import can_fast_forward
from dulwich.repo import Repo

from pca_core.api import (
    ArtifactRepo,
    ArtifactSyncError,
    Capability,
    ConfigIssue,
    RepoSpec,
    SyncResult,
)
from pca_git import _refs, _worktree
from pca_git._atomic import Layout
from pca_git._options import DEFAULT_EMAIL, GitOptions, option_issues
from pca_git._remote import BRANCH_PREFIX, PLUGIN, Fetched, Remote

_log = logging.getLogger(__name__)

# What can go wrong on the local side of an operation, besides what the remote reports.
_LOCAL_ERRORS = (OSError, NotGitRepository, KeyError, ValueError)


class GitRepo(ArtifactRepo):
    """Keeps a directory in sync with a git repository, through dulwich; never runs ``git``.

    In-place mode (the default, as the original agent): the directory holds ``.git`` and the files of the
    checked-out revision, next to any files of its own. A sync fetches only what is missing, then moves
    the files to the new revision; it refuses, changing nothing, when that would overwrite a local change.
    Atomic mode: see :mod:`pca_git._atomic`.

    Credentials go from the :class:`~pca_core.api.artifact_repo.RepoSpec` to the HTTP client only: the URL
    stored in ``.git/config`` has none, and error messages are scrubbed of the password.
    """

    Options = GitOptions
    api_version = (2, 0)
    capabilities = frozenset({Capability.PUSH, Capability.CREDENTIALS})

    def __init__(self, config: Any, options: GitOptions | None = None) -> None:
        super().__init__(config, options if options is not None else GitOptions())

    @classmethod
    def check_config(cls, config: Any, options: GitOptions) -> list[ConfigIssue]:
        """Checks ranges and the author's form."""
        return option_issues(options)

    # --- The contract ----------------------------------------------------------------------------------

    def sync(self, spec: RepoSpec) -> SyncResult:
        """Clones the repository the first time, then fetches and fast-forwards it.

        Raises:
            ArtifactSyncError: the remote failed, or moving to its revision would overwrite local changes
                or local commits; the working directory is left as it was.
        """
        remote = self._remote(spec)
        try:
            if self.options.atomic:
                return self._sync_atomic(spec, remote)
            repo = _refs.open_checkout(Path(spec.path))
            if repo is None:
                return self._clone(spec, remote)
            with contextlib.closing(repo):
                return self._pull(repo, spec, remote)
        except _worktree.UnsafePath as exc:
            raise ArtifactSyncError(PLUGIN, f"{spec.path}: the revision of {remote.url} holds a path that "
                                            f"must not be written ({exc}); nothing was checked out") from None
        except _LOCAL_ERRORS as exc:
            raise remote.error(f"sync of {spec.path} from", exc) from None

    def commit_and_push(self, spec: RepoSpec, message: str) -> str | None:
        """Commits every local change (``git add --all``) on the checked-out branch and pushes it.

        The push must be a fast-forward of the remote branch; when it fails for any reason the commit is
        rolled back (branch and index as before) and the changes stay in the working directory, for the
        next attempt.

        Raises:
            ArtifactSyncError: no checkout, atomic mode, or the push failed (after the rollback).
        """
        if self.options.atomic:
            raise ArtifactSyncError(PLUGIN, "atomic mode publishes read-only revisions: it does not commit")
        remote = self._remote(spec)
        repo = _refs.open_checkout(Path(spec.path))
        if repo is None:
            raise ArtifactSyncError(PLUGIN, f"{spec.path}: no checkout to commit from")
        with contextlib.closing(repo):
            try:
                return self._commit_and_push(repo, spec, remote, message)
            except _LOCAL_ERRORS as exc:
                raise remote.error(f"commit in {spec.path} for", exc) from None

    def remove(self, spec: RepoSpec) -> None:
        """Deletes the working directory (in atomic mode: the link, the revisions and the repository)."""
        path = Path(spec.path)
        layout = Layout(path)
        if layout.owns_link() or layout.root.exists():
            layout.remove()
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        _remove_leftovers(path)

    def current_revision(self, spec: RepoSpec) -> str | None:
        """The revision checked out at ``spec.path``, or None when there is no checkout there."""
        path = Path(spec.path)
        layout = Layout(path)
        if layout.owns_link():
            return layout.current()
        repo = _refs.open_checkout(path)
        if repo is None:
            return None
        with contextlib.closing(repo):
            try:
                return repo.head().decode()
            except KeyError:
                return None

    def check_remote(self, spec: RepoSpec, *, timeout: float | None = None) -> str | None:
        """Reads the remote's refs (``git ls-remote``): the branch followed exists and has a revision.

        Nothing is fetched and nothing is written; ``timeout`` (default ``options.timeout``) bounds the
        connection and each read.

        Raises:
            ArtifactSyncError: the remote cannot be reached or read, refused the credentials, or lacks
                the branch; the message names the remote without its credentials.
        """
        seconds = self.options.timeout if timeout is None else min(timeout, self.options.timeout)
        branch, target = self._remote(spec, seconds).lookup(_refs.wanted_branch(spec))
        return f"branch {branch.decode(errors='replace')} at {target.decode()[:12]}"

    # --- In place --------------------------------------------------------------------------------------

    def _clone(self, spec: RepoSpec, remote: Remote) -> SyncResult:
        """First checkout: fetch into a scratch directory, then move ``.git`` in and write the files."""
        path = Path(spec.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(path)  # of an attempt the agent did not live to clean up
        scratch = _scratch_dir(path)
        try:
            repo = Repo.init(str(scratch), default_branch=b"main")
            with contextlib.closing(repo):
                _refs.set_remote(repo, remote.url)
                fetched = remote.fetch(repo, _refs.wanted_branch(spec))
                _refs.track(repo, fetched.branch, fetched.target)
                tree = repo[fetched.target].tree
                _worktree.check_paths(repo, tree)
            path.mkdir(exist_ok=True)
            control = path / _worktree.CONTROL_DIR
            if os.path.lexists(control):  # a broken repository (a valid one is pulled, not cloned)
                (scratch / _worktree.CONTROL_DIR).rename(scratch / "new.git")
                control.rename(scratch / "broken.git")
                (scratch / "new.git").rename(control)
            else:
                (scratch / _worktree.CONTROL_DIR).rename(control)
            try:
                repo = Repo(str(path))
                with contextlib.closing(repo):
                    _worktree.checkout(repo, str(path), tree)
            except BaseException:
                shutil.rmtree(control, ignore_errors=True)  # the next attempt is a clone again
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _log.info("cloned %s (branch %s) into %s at %s", remote.url, fetched.branch.decode(errors="replace"),
                  path, fetched.target.decode())
        return SyncResult(changed=True, revision=fetched.target.decode(), previous=None)

    def _pull(self, repo: Repo, spec: RepoSpec, remote: Remote) -> SyncResult:
        fetched = remote.fetch(repo, _refs.wanted_branch(spec) or _refs.checked_out_branch(repo))
        if _refs.remote_url(repo) != remote.url:  # recorded once the new remote answered
            _log.info("%s: remote changed to %s", spec.path, remote.url)
            _refs.set_remote(repo, remote.url)
        return self._advance(repo, fetched, spec)

    def _advance(self, repo: Repo, fetched: Fetched, spec: RepoSpec) -> SyncResult:
        """Moves the checkout to the fetched revision, if that loses no local commit and no local change."""
        branch, target = fetched.branch, fetched.target
        head = _refs.head(repo)
        tracking = _refs.TRACKING_PREFIX + branch
        previous_remote = _refs.ref(repo, tracking)
        same_branch = _refs.checked_out_branch(repo) == branch
        if head == target:
            _refs.track(repo, branch, target)
            return SyncResult(changed=False, revision=target.decode(), previous=head.decode())
        if head is not None and same_branch and not can_fast_forward(repo, head, target):
            if can_fast_forward(repo, target, head):
                _refs.track(repo, branch, target, local=False)
                return SyncResult(changed=False, revision=head.decode(), previous=head.decode())
            if previous_remote is None or not can_fast_forward(repo, head, previous_remote):
                raise ArtifactSyncError(PLUGIN, (
                    f"{spec.path}: the checked-out branch {branch.decode(errors='replace')} has local "
                    f"commits the remote does not have, and the remote has new ones: not pulled; push or "
                    f"drop the local commits"))
            _log.warning("%s: the remote rewrote branch %s; following it", spec.path,
                         branch.decode(errors="replace"))
        old_tree = repo[head].tree if head is not None else None
        new_tree = repo[target].tree
        diff = _worktree.changes(repo, old_tree, new_tree)
        lost = _worktree.overwritten(repo, diff)
        if lost:
            raise ArtifactSyncError(PLUGIN, (
                f"{spec.path}: revision {target.decode()} would overwrite local changes to "
                f"{_worktree.describe_paths(lost)}: not pulled; commit them (auto-commit) or undo them"))
        _worktree.advance(repo, old_tree, new_tree, diff)
        _refs.track(repo, branch, target)
        _log.info("%s: %s -> %s (%d files changed)", spec.path, head.decode() if head else None,
                  target.decode(), len(diff))
        return SyncResult(changed=True, revision=target.decode(), previous=head.decode() if head else None)

    def _commit_and_push(self, repo: Repo, spec: RepoSpec, remote: Remote, message: str) -> str | None:
        branch = _refs.checked_out_branch(repo)
        head = _refs.head(repo)
        if branch is None or head is None:
            raise ArtifactSyncError(PLUGIN, f"{spec.path}: no branch checked out to commit on")
        index = _worktree.open_index(repo)
        modified, untracked = _worktree.local_changes(repo, index)
        if not modified and not untracked:
            return None
        saved_index = Path(repo.index_path()).read_bytes()
        _worktree.stage(repo, index, [*modified, *untracked])
        tree = index.commit(repo.object_store)
        if tree == repo[head].tree:
            index.write()  # only the stat information changed
            return None
        commit = _worktree.make_commit(repo, tree, head, self._author(spec), message)
        ref = BRANCH_PREFIX + branch
        if not repo.refs.set_if_equals(ref, head, commit):
            raise ArtifactSyncError(PLUGIN, f"{spec.path}: the branch moved while committing; not committed")
        index.write()

        def fast_forward(current: bytes | None) -> bool:
            return current is None or current == head or (
                current in repo.object_store and can_fast_forward(repo, current, commit))

        try:
            remote.push(repo, branch, commit, fast_forward)
        except Exception as exc:
            repo.refs.set_if_equals(ref, commit, head)
            Path(repo.index_path()).write_bytes(saved_index)
            if isinstance(exc, ArtifactSyncError):
                raise ArtifactSyncError(PLUGIN, f"{exc}; the local commit was rolled back and the changes "
                                                f"are kept for the next attempt") from None
            raise
        repo.refs[_refs.TRACKING_PREFIX + branch] = commit
        _log.info("%s: committed and pushed %s to %s (%d paths)", spec.path, commit.decode(), remote.url,
                  len(modified) + len(untracked))
        return commit.decode()

    # --- Atomic ----------------------------------------------------------------------------------------

    def _sync_atomic(self, spec: RepoSpec, remote: Remote) -> SyncResult:
        layout = Layout(Path(spec.path))
        problem = layout.check_link()
        if problem is not None:
            raise ArtifactSyncError(PLUGIN, problem)
        repo = layout.open_repo(default_branch=b"main")
        with contextlib.closing(repo):
            branch = _refs.wanted_branch(spec) or (
                _refs.checked_out_branch(repo) if _refs.head(repo) is not None else None)
            fetched = remote.fetch(repo, branch)
            if _refs.remote_url(repo) != remote.url:
                _refs.set_remote(repo, remote.url)
            _refs.track(repo, fetched.branch, fetched.target)
            current = layout.current()
            revision = fetched.target.decode()
            if current == revision and (layout.root / revision).is_dir():
                return SyncResult(changed=False, revision=revision, previous=current)
            layout.publish(repo, fetched.target)
        removed = layout.prune(self.options.keep_revisions)
        _log.info("%s -> %s (revisions removed: %s)", spec.path, revision, ", ".join(removed) or "none")
        return SyncResult(changed=True, revision=revision, previous=current)

    # --- Helpers ---------------------------------------------------------------------------------------

    def _remote(self, spec: RepoSpec, timeout: float | None = None) -> Remote:
        password = spec.password.reveal() if spec.password is not None else None
        return Remote(spec.url, spec.username, password, timeout=timeout or self.options.timeout,
                      ssh_key_file=self.options.ssh_key_file)

    def _author(self, spec: RepoSpec) -> str:
        return self.options.author or f"{spec.tenant_id or 'pca'} <{DEFAULT_EMAIL}>"


def _scratch_dir(path: Path) -> Path:
    """A scratch directory on the working directory's file system (``.git`` is renamed out of it).

    Beside the working directory, so that nothing appears in it before the fetch succeeded; inside it
    when its parent is not writable (permissions, or a read-only file system such as systemd's
    ``ProtectSystem=strict`` leaves it).
    """
    try:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.pca-clone-", dir=path.parent))
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        path.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".pca-clone-", dir=path))


def _remove_leftovers(path: Path) -> None:
    for pattern, directory in ((f".{path.name}.pca-clone-*", path.parent), (".pca-clone-*", path)):
        for entry in directory.glob(pattern) if directory.is_dir() else ():
            shutil.rmtree(entry, ignore_errors=True)
