"""Turning plain data into configuration structs, with every problem named by file and key.

msgspec stops at the first invalid value; when there is one, the data is walked field by field so that a
person fixing a file sees every problem at once, not one per run.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from pca_core.api.errors import ConfigError, ConfigErrors
from pca_core.api.secrets import Secret

_T = typing.TypeVar("_T")


def _dec_hook(typ: type, value: Any) -> Any:
    if typ is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ValueError("Expected `str`")
    raise NotImplementedError


def convert(data: Any, typ: type[_T], *, source: str, prefix: str = "",
            origins: Mapping[str, str] | None = None) -> _T:
    """Converts plain data into ``typ``; raises one error listing every problem.

    Args:
        data: what a parser produced (strings are converted to numbers and booleans where expected).
        typ: the target type, usually a ``msgspec.Struct``.
        source: the file the data came from.
        prefix: the dotted key under which ``data`` sits in that file.
        origins: dotted keys whose value came from elsewhere, mapped to where (an environment variable).

    Raises:
        ConfigErrors: naming, for each problem, the file (or variable), the key and what was expected.
    """
    try:
        return msgspec.convert(data, typ, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        first = str(exc)
    origins = origins or {}
    errors = [ConfigError(origins.get(key, source), key or "(top level)", expected)
              for key, expected in problems(data, typ, prefix)]
    if not errors:  # a problem the walk does not see: report msgspec's own words
        errors = [ConfigError(source, prefix or "(top level)", _expected(first))]
    raise ConfigErrors(errors)


def problems(data: Any, typ: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Yields (dotted key, what was expected) for every invalid value in ``data`` against ``typ``."""
    typ = _optional_inner(typ) if data is not None else typ
    if _is_struct(typ) and isinstance(data, dict):
        fields = {f.name: f for f in msgspec.structs.fields(typ)}
        for name, value in data.items():
            path = f"{key}.{name}" if key else str(name)
            if name not in fields:
                yield path, f"unknown key (known keys: {', '.join(fields)})"
            else:
                yield from problems(value, fields[name].type, path)
        for name, field in fields.items():
            if field.required and name not in data:
                yield (f"{key}.{name}" if key else name), "missing; this key is required"
        return
    element = _sequence_element(typ)
    if element is not None and isinstance(data, list | tuple):
        for i, value in enumerate(data):
            yield from problems(value, element, f"{key}[{i}]")
        return
    try:
        msgspec.convert(data, typ, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        literal = _literal_values(typ)
        if literal is not None:
            yield key, f"expected one of {', '.join(map(repr, literal))}, got {data!r}"
        else:
            yield key, _expected(str(exc))


def _expected(message: str) -> str:
    text, _, _where = message.partition(" - at `")
    return text.replace("`", "").replace("Expected", "expected")


def _is_struct(typ: Any) -> bool:
    return isinstance(typ, type) and issubclass(typ, msgspec.Struct)


def _optional_inner(typ: Any) -> Any:
    """``X`` for ``X | None``; ``typ`` itself otherwise."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return typ


def _sequence_element(typ: Any) -> Any:
    """``X`` for ``tuple[X, ...]`` and ``list[X]``; None otherwise."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is list and args:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _literal_values(typ: Any) -> tuple[Any, ...] | None:
    return typing.get_args(typ) if typing.get_origin(typ) is typing.Literal else None


def is_sequence(typ: Any, path: list[str | int]) -> bool:
    """Whether the key at ``path`` (field names and list indexes from ``typ`` down) holds a list."""
    for part in path:
        if isinstance(part, int):
            typ = _sequence_element(typ)
            continue
        if not _is_struct(typ):
            return False
        field = next((f for f in msgspec.structs.fields(typ) if f.name == part), None)
        if field is None:
            return False
        typ = _optional_inner(field.type)
    return _sequence_element(typ) is not None
