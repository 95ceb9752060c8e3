"""Checks the event classes against the events manifest, field by field.

The manifest (``pca_core/data/stratos-events.json``, a copy of the Stratos messaging component's facts)
names every event and domain class, and each one's fields in Gson's order with their JSON types. The
original agent's classes drifted from the Java ones unnoticed; :func:`check` is what notices.
"""

from __future__ import annotations

import json
import types
import typing
from importlib import resources
from typing import Any

import msgspec

from pca_core.stratos.events import wire
from pca_core.stratos.events.base import WireObject

# Older Stratos shapes the classes also accept (they decode and re-encode them as they came); each is a
# documented exception, not drift. Keep in step with tools/gen_events.py.
COMPATIBLE: dict[tuple[str, str], str] = {
    ("Cluster", "accessUrls"): "map<string,array<string>> | array<string>",
    ("Application", "instanceIdSequence"): "object:AtomicInteger | integer",
    ("Group", "instanceIdSequence"): "object:AtomicInteger | integer",
    ("Topology", "initialized"): "boolean",
}


def load_manifest() -> dict[str, Any]:
    """The manifest shipped with pca-core."""
    return json.loads(resources.files("pca_core.data").joinpath("stratos-events.json").read_text())


def json_type(annotation: Any) -> str:
    """The manifest's spelling of a field's type, from its Python annotation (Optional dropped)."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType):
        members = [json_type(a) for a in args if a is not type(None)]
        return " | ".join(members)
    origin = typing.get_origin(annotation)
    if origin is list:
        return f"array<{json_type(args[0])}>"
    if origin is dict:
        return f"map<string,{json_type(args[1])}>"
    if isinstance(annotation, type) and issubclass(annotation, WireObject):
        return f"object:{annotation.MANIFEST}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[annotation]


def _expected(json_type_text: str) -> str:
    # Enums are decoded as text, so that a status a newer control plane adds still decodes.
    if json_type_text.startswith("enum:"):
        return "string"
    for container in ("array<", "map<string,"):
        if json_type_text.startswith(container):
            return f"{container}{_expected(json_type_text[len(container):-1])}>"
    return json_type_text


def _fields(cls: type[WireObject]) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    return [(f.encode_name, json_type(hints[f.name])) for f in msgspec.structs.fields(cls)]


def check(manifest: dict[str, Any]) -> list[str]:
    """Compares every generated class with ``manifest``.

    Returns:
        One line per difference (a class missing or extra, a field gained, lost, moved or retyped);
        empty when the classes match.
    """
    classes = {cls.MANIFEST: cls for cls in vars(wire).values()
               if isinstance(cls, type) and issubclass(cls, WireObject) and cls.MANIFEST}
    wanted = {name: spec["fields"] for name, spec in manifest["types"].items() if "fields" in spec}
    wanted.update({event["name"]: event["fields"] for event in manifest["events"]})
    problems = [f"{name}: no class for it" for name in wanted if name not in classes]
    problems += [f"{name}: class not in the manifest" for name in classes if name not in wanted]
    for name, fields in wanted.items():
        if name in classes:
            problems += _compare(name, _fields(classes[name]), fields)
    return problems


def _compare(name: str, have: list[tuple[str, str]], fields: list[dict[str, Any]]) -> list[str]:
    expected = {f["json"]: COMPATIBLE.get((name, f["json"]), _expected(f["json_type"])) for f in fields}
    have_types = dict(have)
    problems = []
    for key, typ in expected.items():
        if key not in have_types:
            problems.append(f"{name}.{key}: in the manifest, missing from the class")
        elif have_types[key] != typ:
            problems.append(f"{name}.{key}: the class has {have_types[key]}, the manifest {typ}")
    for key, typ in have:
        if key not in expected and COMPATIBLE.get((name, key)) != typ:
            problems.append(f"{name}.{key}: in the class, not in the manifest")
    order = [key for key, _ in have if key in expected]
    if order != [key for key in expected if key in have_types]:
        problems.append(f"{name}: fields are not in the manifest's (Gson's) order")
    return problems
