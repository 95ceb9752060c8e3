"""Tag templates: ``pca.{stream}``, ``app.{service_name}.{member_id}``, checked and filled in."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMATTER = string.Formatter()


def template_problem(template: str) -> str | None:
    """What a valid template looks like, when ``template`` is not one; None when it is.

    A template is text with placeholders of plain names in braces (``{member_id}``); ``{{`` and ``}}``
    stand for braces. Format specifications, conversions, indexes and attributes are not allowed.
    """
    expected = ("a tag template: text and placeholders of plain names in braces, such as "
                "'pca.{stream}' or 'app.{service_name}.{member_id}'")
    if not template:
        return f"{expected}; got an empty string"
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        return f"{expected}; {template!r} has {exc}"
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if not _NAME.match(name) or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            return f"{expected}; {template!r} has the placeholder {shown}"
    return None


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its placeholders replaced by ``values``.

    Raises:
        KeyError: a placeholder names no key of ``values``; its argument is the name.
    """
    out = []
    for literal, name, _spec, _conversion in _FORMATTER.parse(template):
        out.append(literal)
        if name is not None:
            out.append(str(values[name]))
    return "".join(out)
