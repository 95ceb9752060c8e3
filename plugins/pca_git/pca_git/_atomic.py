"""Atomic publication: each revision checked out into its own directory, served through a symlink.

For a working directory ``/srv/app`` the layout is::

    /srv/.app.pca/repo.git         the repository (bare): objects, refs and the remote's URL
    /srv/.app.pca/<revision>/      one checkout per revision, named by its commit id
    /srv/app -> .app.pca/<revision>   the link consumers use, switched with one rename(2)

A reader of ``/srv/app`` sees the old revision or the new one, never a mix. The previous revisions are
kept (``keep_revisions``) so that a process still inside one is not pulled out from under it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from dulwich.repo import Repo

from pca_git import _worktree

_REVISION = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class Layout:
    """Where the repository, the revisions and the link of one working directory live.

    Args:
        path: the working directory consumers use; it becomes a symlink.
    """

    def __init__(self, path: Path) -> None:
        self.link = path
        self.root = path.parent / f".{path.name}.pca"
        self.git_dir = self.root / "repo.git"

    def owns_link(self) -> bool:
        """Whether the working directory is a link into this layout."""
        if not self.link.is_symlink():
            return False
        target = os.readlink(self.link)
        return Path(target).parent.name == self.root.name and bool(_REVISION.match(Path(target).name))

    def current(self) -> str | None:
        """The revision the link points to, if it points into this layout."""
        return Path(os.readlink(self.link)).name if self.owns_link() else None

    def check_link(self) -> str | None:
        """Returns what stops the link from being placed at the working directory, if anything."""
        if self.owns_link() or not os.path.lexists(self.link):
            return None
        if self.link.is_dir() and not self.link.is_symlink() and not any(self.link.iterdir()):
            return None
        return (f"{self.link} exists and is not a link made by pca; atomic mode needs it absent, empty, or "
                f"a link it manages (move its content away first)")

    def open_repo(self, default_branch: bytes) -> Repo:
        """Opens the layout's bare repository, creating it the first time."""
        if self.git_dir.is_dir():
            return Repo(str(self.git_dir))
        self.root.mkdir(parents=True, exist_ok=True)
        self.git_dir.mkdir()
        return Repo.init_bare(str(self.git_dir), default_branch=default_branch)

    def publish(self, repo: Repo, revision: bytes) -> None:
        """Checks ``revision`` out into its own directory and switches the link to it in one rename."""
        name = revision.decode()
        final = self.root / name
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        index = self.root / f".{name}.index"
        try:
            tree = repo[revision].tree
            _worktree.check_paths(repo, tree)
            _worktree.checkout(repo, str(staging), tree, index_path=str(index))
            if final.exists():
                shutil.rmtree(final)  # an older copy of a revision published again
            staging.rename(final)
            os.utime(final)  # the publication time orders the revisions kept by prune()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                index.unlink()
        self._switch(Path(self.root.name) / name)

    def _switch(self, target: Path) -> None:
        if self.link.is_dir() and not self.link.is_symlink():
            self.link.rmdir()  # empty, as check_link made sure
        temporary = self.link.parent / f".{self.link.name}.pca-link"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(target)
        os.replace(temporary, self.link)

    def prune(self, keep: int) -> list[str]:
        """Deletes all revisions but the current one and the ``keep`` most recent others; returns them."""
        current = self.current()
        others = [entry for entry in self.root.iterdir()
                  if entry.is_dir() and _REVISION.match(entry.name) and entry.name != current]
        others.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
        removed = []
        for entry in others[keep:]:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed

    def remove(self) -> None:
        """Deletes the link (if it is this layout's) and everything in the layout."""
        if self.owns_link():
            self.link.unlink()
        shutil.rmtree(self.root, ignore_errors=True)
