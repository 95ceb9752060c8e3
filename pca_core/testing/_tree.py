"""What a working directory holds, as the artifact repository suite compares and searches it."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

Entry = tuple[object, ...]
"""One entry of a snapshot: its kind, then what tells two versions of it apart."""

_CHUNK = 1 << 20  # files are searched a chunk at a time, so memory stays bounded whatever their size


def _walk(root: Path, skip: Collection[str]) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Every entry below ``root`` (a link at ``root`` itself followed), as (relative path, path, lstat).

    Top-level entries named in ``skip`` are left out, with everything below them. Links below ``root``
    are reported, not followed.
    """
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        top = here == root
        dirs[:] = sorted(d for d in dirs if not (top and d in skip))
        for name in (*dirs, *sorted(f for f in files if not (top and f in skip))):
            path = here / name
            yield path.relative_to(root).as_posix(), path, path.lstat()


def snapshot(root: Path, skip: Collection[str] = ()) -> dict[str, Entry]:
    """Everything below ``root`` that a change to it would alter: kind, mode, size, mtime and content.

    Directories are recorded by mode only (their times change with what is added beside the skipped
    entries); a link at ``root`` itself is recorded as ``"."`` with its target. A missing ``root`` gives
    an empty snapshot.
    """
    entries: dict[str, Entry] = {}
    if os.path.islink(root):
        entries["."] = ("link", os.readlink(root))
    if not root.is_dir():
        return entries
    for relative, path, st in _walk(root, skip):
        if stat.S_ISDIR(st.st_mode):
            entries[relative] = ("dir", stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            entries[relative] = ("link", os.readlink(path))
        else:
            entries[relative] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, _digest(path))
    return entries


def working_files(root: Path, skip: Collection[str] = ()) -> dict[str, bytes]:
    """The content of every regular file below ``root``, by ``/``-separated relative path."""
    if not root.is_dir():
        return {}
    return {relative: path.read_bytes() for relative, path, st in _walk(root, skip)
            if stat.S_ISREG(st.st_mode)}


def files_holding(root: Path, needles: Iterable[bytes]) -> list[str]:
    """The regular files below ``root`` (links not followed, nothing skipped) that hold any of ``needles``."""
    wanted = [n for n in needles if n]
    if not wanted or not root.is_dir():
        return []
    overlap = max(len(n) for n in wanted) - 1
    found = []
    for relative, path, st in _walk(root, ()):
        if stat.S_ISREG(st.st_mode) and _holds(path, wanted, overlap):
            found.append(relative)
    return found


def _holds(path: Path, needles: list[bytes], overlap: int) -> bool:
    tail = b""
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
