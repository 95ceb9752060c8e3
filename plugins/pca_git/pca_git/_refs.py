"""Reading and moving a checkout's refs, and what ``.git/config`` records about its remote."""

from __future__ import annotations

from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from pca_core.api import RepoSpec
from pca_git import _worktree
from pca_git._remote import BRANCH_PREFIX, HEAD

ORIGIN = b"origin"
TRACKING_PREFIX = b"refs/remotes/origin/"


def open_checkout(path: Path) -> Repo | None:
    """The repository at ``path``, or None when there is none or it is broken."""
    if not (path / _worktree.CONTROL_DIR).is_dir():
        return None
    try:
        repo = Repo(str(path))
    except (NotGitRepository, OSError, ValueError, KeyError):
        return None
    try:
        if head(repo) is not None:
            return repo
    except (OSError, ValueError):
        pass
    repo.close()
    return None


def head(repo: Repo) -> bytes | None:
    """The checked-out revision, or None when HEAD is unborn or names a missing object."""
    try:
        sha = repo.refs[HEAD]
    except KeyError:
        return None
    return sha if sha in repo.object_store else None


def wanted_branch(spec: RepoSpec) -> bytes | None:
    """The branch ``spec`` asks for, or None for the remote's default."""
    return spec.branch.encode() if spec.branch else None


def checked_out_branch(repo: Repo) -> bytes | None:
    """The branch HEAD points to (without ``refs/heads/``), or None when it is detached."""
    chain, _sha = repo.refs.follow(HEAD)
    target = chain[-1] if len(chain) > 1 else None
    return target[len(BRANCH_PREFIX):] if target is not None and target.startswith(BRANCH_PREFIX) else None


def track(repo: Repo, branch: bytes, target: bytes, *, local: bool = True) -> None:
    """Records the remote's revision; with ``local``, also makes it the checked-out branch's.

    Writes only what differs, so that a sync with nothing new writes nothing.
    """
    set_ref(repo, TRACKING_PREFIX + branch, target)
    if not local:
        return
    set_ref(repo, BRANCH_PREFIX + branch, target)
    if checked_out_branch(repo) != branch:
        repo.refs.set_symbolic_ref(HEAD, BRANCH_PREFIX + branch)
    config = repo.get_config()
    section = (b"branch", branch)
    try:
        merge = config.get(section, b"merge")
    except KeyError:
        merge = None
    if merge != BRANCH_PREFIX + branch:
        config.set(section, b"remote", ORIGIN)
        config.set(section, b"merge", BRANCH_PREFIX + branch)
        config.write_to_path()


def ref(repo: Repo, name: bytes) -> bytes | None:
    """The revision ``name`` points to, or None when there is no such ref."""
    try:
        return repo.refs[name]
    except KeyError:
        return None


def set_ref(repo: Repo, name: bytes, value: bytes) -> None:
    """Points ``name`` at ``value``, writing nothing when it already does."""
    if ref(repo, name) != value:
        repo.refs[name] = value


def remote_url(repo: Repo) -> str | None:
    """The URL recorded for ``origin`` in ``.git/config``, if any."""
    try:
        return repo.get_config().get((b"remote", ORIGIN), b"url").decode()
    except KeyError:
        return None


def set_remote(repo: Repo, url: str) -> None:
    """Writes the remote's URL (never with credentials) and its fetch refspec to ``.git/config``."""
    config = repo.get_config()
    config.set((b"remote", ORIGIN), b"url", url.encode())
    config.set((b"remote", ORIGIN), b"fetch", b"+refs/heads/*:" + TRACKING_PREFIX + b"*")
    config.write_to_path()
