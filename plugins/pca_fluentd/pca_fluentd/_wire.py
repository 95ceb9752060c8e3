"""The Forward protocol v1 as bytes: chunks of events, acknowledgements, and the shared-key handshake.

Events travel in PackedForward mode, ``[tag, entries, options]``, where ``entries`` is the concatenated
msgpack of ``[time, record]`` pairs (gzip-compressed in CompressedPackedForward mode) and ``options``
carries ``size``, ``chunk`` (when an acknowledgement is wanted) and ``compressed``. A server that wants
the handshake opens with ``["HELO", {nonce, auth, keepalive}]``, the client answers ``["PING", ...]`` and
the server ``["PONG", ...]``; both sides prove they know the shared key with SHA-512 digests of it, salted.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from fluent.sender import EventTime

from pca_core.api import LogRecord


class ProtocolError(Exception):
    """The server said something the Forward protocol does not allow here; the message says what."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One PackedForward message of a batch, ready to send.

    Attributes:
        data: the whole message, msgpack.
        records: how many records it carries.
        chunk_id: the ``chunk`` option the server echoes in its acknowledgement; None when none is wanted.
    """

    data: bytes
    records: int
    chunk_id: str | None


def new_chunk_id() -> str:
    """A chunk id never used before: base64 of 16 random bytes, as the specification suggests."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def _packer() -> msgpack.Packer:
    # Values msgpack cannot represent (a datetime, a Path) travel as their text rather than stall the batch.
    return msgpack.Packer(use_bin_type=True, default=str)


def pack_chunk(tag: str, records: Sequence[LogRecord], *, ack: bool, compress: bool,
               time_as_integer: bool) -> Chunk:
    """The PackedForward message of ``records``, all of tag ``tag``.

    Args:
        tag: the Fluentd tag of every record.
        records: the records; each one's ``fields`` is its record map, its ``timestamp`` its time.
        ack: ask for an acknowledgement (a ``chunk`` option).
        compress: gzip the entries (CompressedPackedForward).
        time_as_integer: whole seconds instead of EventTime (for Fluentd v0.12).
    """
    packer = _packer()
    entries = b"".join(
        packer.pack([int(r.timestamp) if time_as_integer else EventTime(r.timestamp),
                     r.fields if isinstance(r.fields, dict) else dict(r.fields)])
        for r in records)
    options: dict[str, Any] = {"size": len(records)}
    chunk_id = new_chunk_id() if ack else None
    if chunk_id is not None:
        options["chunk"] = chunk_id
    if compress:
        entries = gzip.compress(entries, compresslevel=6)
        options["compressed"] = "gzip"
    return Chunk(packer.pack([tag, entries, options]), len(records), chunk_id)


def unpacker() -> msgpack.Unpacker:
    """A streaming decoder of what a server sends: acknowledgements and handshake messages."""
    # surrogateescape: a str that is not UTF-8 (a nonce sent as str) keeps its bytes.
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", max_buffer_size=1 << 20)


def ack_of(message: Any) -> str:
    """The chunk id ``message`` acknowledges.

    Raises:
        ProtocolError: ``message`` is not ``{"ack": chunk id}``.
    """
    if isinstance(message, Mapping) and isinstance(message.get("ack"), str | bytes):
        ack = message["ack"]
        return ack if isinstance(ack, str) else ack.decode("utf-8", "surrogateescape")
    if is_helo(message):
        raise ProtocolError("it requires the shared-key handshake (it sent HELO); set options.shared_key")
    raise ProtocolError(f"it answered {_shown(message)} where an acknowledgement ({{'ack': chunk}}) belongs")


# -- the handshake ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Helo:
    """What a server's HELO asks for.

    Attributes:
        nonce: the bytes both digests of the shared key include.
        auth_salt: the salt of the password digest; empty when the server wants no user login.
        keepalive: whether the server keeps the connection after a message; False: one per connection.
    """

    nonce: bytes
    auth_salt: bytes
    keepalive: bool


@dataclass(frozen=True, slots=True)
class Credentials:
    """What this client proves in the handshake (the secrets stay out of its ``repr``)."""

    shared_key: str = field(repr=False)
    self_hostname: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_helo(message: Any) -> bool:
    """Whether ``message`` is a HELO."""
    return isinstance(message, list | tuple) and len(message) >= 1 and message[0] == "HELO"


def parse_helo(message: Any) -> Helo:
    """The content of a HELO.

    Raises:
        ProtocolError: ``message`` is not ``["HELO", {"nonce": ..., ...}]``.
    """
    if not is_helo(message) or len(message) != 2 or not isinstance(message[1], Mapping) \
            or not isinstance(message[1].get("nonce"), str | bytes):
        raise ProtocolError(f"it opened with {_shown(message)} where a HELO belongs")
    options = message[1]
    return Helo(_bytes(options["nonce"]), _bytes(options.get("auth") or b""),
                bool(options.get("keepalive", True)))


def ping(helo: Helo, credentials: Credentials, salt: str) -> bytes:
    """The PING answering ``helo``: this host's name, the salted digest of the shared key and the login."""
    digest = _digest(salt, credentials.self_hostname, helo.nonce, credentials.shared_key)
    username = password_digest = ""
    if helo.auth_salt:
        username = credentials.username or ""
        password_digest = hashlib.sha512(
            helo.auth_salt + username.encode() + (credentials.password or "").encode()).hexdigest()
    return _packer().pack(["PING", credentials.self_hostname, salt, digest, username, password_digest])


def new_salt() -> str:
    """A fresh salt for the shared-key digest."""
    return secrets.token_hex(16)


def check_pong(message: Any, helo: Helo, credentials: Credentials, salt: str) -> str | None:
    """Why the server's PONG refuses this client; None when it accepts and proved it knows the shared key.

    Raises:
        ProtocolError: ``message`` is not a PONG.
    """
    if not (isinstance(message, list | tuple) and len(message) == 5 and message[0] == "PONG"):
        raise ProtocolError(f"it answered the PING with {_shown(message)} where a PONG belongs")
    _pong, accepted, reason, server_hostname, digest = message
    if accepted is not True:
        return f"it refused the login ({_scrubbed(str(reason), credentials)})"
    expected = _digest(salt, str(server_hostname), helo.nonce, credentials.shared_key)
    if not (isinstance(digest, str) and secrets.compare_digest(digest, expected)):
        return "its answer does not prove it knows the shared key (the PONG digest differs)"
    return None


def _digest(salt: str, hostname: str, nonce: bytes, shared_key: str) -> str:
    return hashlib.sha512(salt.encode() + hostname.encode() + nonce + shared_key.encode()).hexdigest()


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _scrubbed(text: str, credentials: Credentials) -> str:
    """``text`` without the shared key or the password, should a server echo them; one line."""
    for secret in (credentials.shared_key, credentials.password):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:200]


def _shown(message: Any) -> str:
    return " ".join(repr(message).split())[:120]
