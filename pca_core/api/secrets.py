"""Secrets that never print themselves, and masking of credentials inside free text."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host — the password part is replaced, the rest kept for diagnosis.
# Keys whose values are secrets; a Docker payload carries the whole environment, so match by name.
_SECRET_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|(^|_)KEY$", re.IGNORECASE)
# The lookbehind starts a match only where a scheme can start, which keeps long words linear.
_URL_CREDENTIALS = re.compile(r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")


class Secret:
    """A value (password, key, token) that prints as ``***``.

    ``str()``, ``repr()`` and formatting never show the value; call :meth:`reveal` at the one place that
    hands it to a client library.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Returns the secret value."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask_credentials(text: str) -> str:
    """Returns ``text`` with the password of every ``scheme://user:password@`` URL replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Splits ``scheme://user:password@host/...`` into the URL without them, the user and the password.

    The user and password are URL-decoded (``%40`` in a password is ``@``). URLs without a scheme (local
    paths, ``user@host:path``) and ``ssh://`` URLs (whose user is part of the address) come back as they are.
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc or parts.scheme in ("ssh", "git+ssh"):
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if sep else None


def without_password(url: str) -> str:
    """``url`` with any password taken out of it; the user, if any, is kept."""
    clean, user, _password = split_credentials(url)
    if user is None:
        return clean
    parts = urlsplit(clean)
    return urlunsplit((parts.scheme, f"{quote(user, safe='')}@{parts.netloc}", parts.path, parts.query,
                       parts.fragment))


def is_secret_key(key: str) -> bool:
    """Tells whether a key names a secret (``password``, ``repoPassword``, ``TOKEN``, ``CARTRIDGE_KEY``)."""
    return bool(_SECRET_KEY.search(key))


def mask_data(value: Any, key: str = "") -> Any:
    """A copy of plain data (dicts, lists, strings) with every secret masked.

    Masked: :class:`Secret` values, non-empty strings under a key that names a secret, and the password
    of any credentialed URL.
    """
    if isinstance(value, Secret) or (isinstance(value, str) and value and is_secret_key(key)):
        return MASK
    if isinstance(value, str):
        return mask_credentials(value)
    if isinstance(value, dict):
        return {k: mask_data(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v, key) for v in value]
    return value
