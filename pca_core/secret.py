"""Secrets that never print themselves, and masking of credentials inside free text."""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host — the password part is replaced, the rest kept for diagnosis.
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")


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
    return _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
