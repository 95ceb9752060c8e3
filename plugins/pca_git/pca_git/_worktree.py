"""The working directory of an in-place checkout: moving it between revisions and finding local changes.

Every path comes from dulwich's path checks (no ``.git`` element, no ``..``, no write through a symlinked
directory). Content is never run through filters or hooks: those would start programs named by the
repository or the user's configuration.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Sequence

from dulwich.diff_tree import CHANGE_ADD, CHANGE_DELETE, CHANGE_MODIFY, TreeChange, tree_changes
from dulwich.ignore import IgnoreFilterManager
from dulwich.index import (
    Index,
    blob_from_path_and_stat,
    build_index_from_tree,
    get_path_element_validator,
    get_unstaged_changes,
    index_entry_from_stat,
    update_working_tree,
    validate_path,
)
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Commit
from dulwich.repo import Repo

CONTROL_DIR = ".git"
SHOWN_PATHS = 10  # paths named in an error message at most


class UnsafePath(Exception):
    """A revision holds a path that must not be written (``.git``, ``..``)."""


def _validator(repo: Repo):  # noqa: ANN202 - dulwich's own callable type
    return get_path_element_validator(repo.get_config())


def check_paths(repo: Repo, tree: bytes) -> None:
    """Checks every path of ``tree`` before anything is written.

    Raises:
        UnsafePath: naming the first offending path.
    """
    valid = _validator(repo)
    for entry in iter_tree_contents(repo.object_store, tree):
        assert entry.path is not None
        if not validate_path(entry.path, valid):
            raise UnsafePath(entry.path.decode(errors="replace"))


def checkout(repo: Repo, root: str, tree: bytes, index_path: str | None = None) -> None:
    """Writes every file of ``tree`` under ``root`` (overwriting same-named files) and a fresh index.

    The caller checks the paths first (:func:`check_paths`); dulwich checks them again as it writes.
    """
    build_index_from_tree(root, index_path or repo.index_path(), repo.object_store, tree,
                          validate_path_element=_validator(repo))


def changes(repo: Repo, old_tree: bytes | None, new_tree: bytes) -> list[TreeChange]:
    """The file changes from ``old_tree`` to ``new_tree`` (adds, deletes and modifications)."""
    return list(tree_changes(repo.object_store, old_tree, new_tree))


def overwritten(repo: Repo, diff: Sequence[TreeChange]) -> list[str]:
    """The paths whose local content moving along ``diff`` would destroy.

    A tracked file is safe to replace when it still holds the old revision's content (or already holds the
    new one); a file the new revision adds is safe to write when it does not exist or holds that content.
    """
    root = os.fsencode(repo.path)
    deleted = {c.old.path for c in diff if c.type == CHANGE_DELETE and c.old is not None}
    lost: list[str] = []
    for change in diff:
        old, new = change.old, change.new
        if change.type in (CHANGE_MODIFY, CHANGE_DELETE) and old is not None and old.path is not None:
            expected = {old.sha, new.sha if new is not None else None}
            if not _holds(os.path.join(root, old.path), expected, allow_missing=True):
                lost.append(old.path.decode(errors="replace"))
        elif change.type == CHANGE_ADD and new is not None and new.path is not None and (
                not _holds(os.path.join(root, new.path), {new.sha}, allow_missing=True)
                or _blocked_by_file(root, new.path, deleted)):
            lost.append(new.path.decode(errors="replace"))
    return lost


def _holds(full_path: bytes, shas: set[bytes | None], *, allow_missing: bool) -> bool:
    try:
        st = os.lstat(full_path)
    except FileNotFoundError:
        return allow_missing
    if stat.S_ISDIR(st.st_mode):
        return not os.listdir(full_path)  # an empty directory loses nothing
    return blob_from_path_and_stat(full_path, st).id in shas


def _blocked_by_file(root: bytes, path: bytes, deleted: set[bytes | None]) -> bool:
    """Whether a leading directory of ``path`` exists locally as a file the update does not remove."""
    parts = path.split(b"/")[:-1]
    for i in range(1, len(parts) + 1):
        leading = b"/".join(parts[:i])
        try:
            st = os.lstat(os.path.join(root, leading))
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return leading not in deleted
    return False


def advance(repo: Repo, old_tree: bytes | None, new_tree: bytes, diff: Sequence[TreeChange]) -> None:
    """Applies ``diff`` to the working directory and the index (checked by :func:`overwritten` first)."""
    check_paths(repo, new_tree)
    update_working_tree(repo, old_tree, new_tree, iter(diff), allow_overwrite_modified=True,
                        blob_normalizer=None, symlink_fn=None, config=repo.get_config())


def open_index(repo: Repo) -> Index:
    """The repository's index, read with its own configuration only."""
    return repo.open_index(config=repo.get_config())


def local_changes(repo: Repo, index: Index) -> tuple[list[bytes], list[bytes]]:
    """The tracked paths modified or deleted locally, and the untracked paths not ignored."""
    modified = list(get_unstaged_changes(index, repo.path))
    return modified, list(_untracked(repo, index))


def _untracked(repo: Repo, index: Index) -> Iterator[bytes]:
    ignore = IgnoreFilterManager.from_repo(repo, config=repo.get_config())
    root = repo.path
    for directory, dirs, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        kept = []
        for name in dirs:
            if name == CONTROL_DIR or os.path.exists(os.path.join(directory, name, CONTROL_DIR)):
                continue  # our own control directory, or another repository nested inside
            if ignore.is_ignored(f"{prefix}{name}/"):
                continue
            if os.path.islink(os.path.join(directory, name)):
                files.append(name)  # a symlink to a directory is a file to git
                continue
            kept.append(name)
        dirs[:] = kept
        for name in files:
            path = os.fsencode(prefix + name)
            if path not in index and not ignore.is_ignored(prefix + name):
                yield path


def stage(repo: Repo, index: Index, paths: Sequence[bytes]) -> None:
    """Records the working copy of each path in ``index`` (a missing file is removed from it)."""
    root = os.fsencode(repo.path)
    for path in paths:
        full_path = os.path.join(root, path)
        try:
            st = os.lstat(full_path)
        except FileNotFoundError:
            if path in index:
                del index[path]
            continue
        blob = blob_from_path_and_stat(full_path, st)
        repo.object_store.add_object(blob)
        index[path] = index_entry_from_stat(st, blob.id)


def make_commit(repo: Repo, tree: bytes, parent: bytes, author: str, message: str) -> bytes:
    """Adds a commit of ``tree`` on top of ``parent`` to the object store; returns its id."""
    commit = Commit()
    commit.tree = tree
    commit.parents = [parent]
    commit.author = commit.committer = author.encode()
    commit.author_time = commit.commit_time = int(time.time())
    offset = time.localtime().tm_gmtoff
    commit.author_timezone = commit.commit_timezone = offset
    commit.encoding = b"UTF-8"
    commit.message = message.encode() + (b"" if message.endswith("\n") else b"\n")
    repo.object_store.add_object(commit)
    return commit.id


def describe_paths(paths: Sequence[str]) -> str:
    """Up to :data:`SHOWN_PATHS` paths, comma-separated, with how many more there are."""
    shown = ", ".join(paths[:SHOWN_PATHS])
    return shown + (f" and {len(paths) - SHOWN_PATHS} more" if len(paths) > SHOWN_PATHS else "")
