"""The position file: where each followed file was read to, kept across restarts.

One JSON document, replaced atomically (a temporary file, fsync, rename, fsync of the directory): the
patterns that were watched, and for each file its name, (device, inode), the offset after its last line
that every publisher accepted, and a digest of its first bytes. The digest tells a file from another that
reuses a freed inode (fluent-bit#1875, elastic/beats#1341).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HEAD_BYTES", "FileId", "Position", "load_positions", "save_positions", "sha256"]

_log = logging.getLogger(__name__)

FileId = tuple[int, int]
"""A file's (st_dev, st_ino)."""

HEAD_BYTES = 256
"""How many of a file's first bytes identify it together with its inode."""

_FORMAT_VERSION = 1


def sha256(data: bytes) -> str:
    """The hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Position:
    """Where one file was read to, as the position file holds it.

    Attributes:
        path: the name the file was followed under.
        dev: its device number.
        ino: its inode number.
        offset: the offset after the last line every publisher accepted: where a restart resumes.
        head_len: how many of its first bytes ``head_sha256`` covers.
        head_sha256: the digest of those bytes.
    """

    path: str
    dev: int
    ino: int
    offset: int
    head_len: int
    head_sha256: str

    @property
    def id(self) -> FileId:
        """The (device, inode) it was saved for."""
        return (self.dev, self.ino)

    @classmethod
    def of(cls, path: str, fid: FileId, offset: int, head: bytes) -> Position:
        """The position of a followed file."""
        return cls(path, fid[0], fid[1], offset, len(head), sha256(head))

    def fits(self, head: bytes, size: int) -> bool:
        """Whether a file with this head and size is the file the position was saved for."""
        return (self.offset <= size and len(head) >= self.head_len
                and sha256(head[: self.head_len]) == self.head_sha256)


def load_positions(path: Path) -> tuple[dict[FileId, Position], frozenset[str]]:
    """Reads the position file; a missing or unreadable one is a first run (the latter logged).

    Returns:
        The saved positions by (device, inode), and the patterns that were watched.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, frozenset()
    except OSError as exc:
        _log.warning("log tailer: cannot read the position file %s: %s; starting as on a first run",
                     path, exc.strerror or exc)
        return {}, frozenset()
    try:
        doc: Any = json.loads(text)
        saved = {}
        for entry in doc["files"]:
            position = Position(str(entry["path"]), int(entry["dev"]), int(entry["ino"]),
                                int(entry["offset"]), int(entry["head_len"]), str(entry["head_sha256"]))
            saved[position.id] = position
        patterns = frozenset(str(p) for p in doc["patterns"])
    except (ValueError, KeyError, TypeError) as exc:
        _log.warning("log tailer: %s is not a valid position file (%s); starting as on a first run",
                     path, exc)
        return {}, frozenset()
    return saved, patterns


def save_positions(path: Path, patterns: Iterable[str], positions: Iterable[Position]) -> None:
    """Writes the position file atomically.

    Raises:
        OSError: it could not be written; the previous one is left as it was.
    """
    doc = {
        "version": _FORMAT_VERSION,
        "patterns": list(patterns),
        "files": [{"path": p.path, "dev": p.dev, "ino": p.ino, "offset": p.offset, "head_len": p.head_len,
                   "head_sha256": p.head_sha256} for p in positions],
    }
    temp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp.open("w", encoding="utf-8") as handle:
        json.dump(doc, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in ``directory`` durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
