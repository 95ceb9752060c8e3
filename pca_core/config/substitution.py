"""References in a native file's string values: ``${VAR}``, ``${VAR:-default}`` and ``${file:/path}``.

Secrets can then stay out of the file: in the environment, or in a file such as a Docker or Kubernetes
secret. What a reference put into a value is never quoted in an error; :meth:`Substitutions.scrub` masks it
in the errors found later about that value.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pca_core.api.errors import ConfigError
from pca_core.api.secrets import MASK

# ``$${`` (a literal ``${``), a reference ``${...}``, or a ``${`` that is never closed.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_FORMS = "${VAR}, ${VAR:-default} or ${file:/path}; $${ stands for a literal ${"


@dataclass
class Substitutions:
    """What substituting a configuration tree did.

    Attributes:
        errors: a reference that could not be resolved or is malformed, each naming the file and key.
        failed: the dotted keys of those values (left as the file has them).
        inserted: for each dotted key whose value holds a reference, the texts the references put in and
            the resulting value.
    """

    errors: list[ConfigError] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    inserted: dict[str, list[str]] = field(default_factory=dict)

    def scrub(self, errors: list[ConfigError]) -> list[ConfigError]:
        """``errors`` with every substituted text masked, less the follow-ups of a failed reference.

        An error about a value whose reference failed is left out: the reference's own error says what is
        wrong, and the value checked was the file's unresolved text.
        """
        own = {id(error) for error in self.errors}
        result: list[ConfigError] = []
        for error in errors:
            if id(error) in own:
                result.append(error)
                continue
            if any(_related(error.key, key) for key in self.failed):
                continue
            texts = {text for key, inserted in self.inserted.items() if _related(error.key, key)
                     for text in inserted if text}
            expected = error.expected
            for text in sorted(texts, key=len, reverse=True):
                expected = expected.replace(text, MASK).replace(repr(text)[1:-1], MASK)
            if expected != error.expected:
                error = ConfigError(error.source, error.key, expected)
            result.append(error)
        return result


def substitute(tree: dict[str, Any], *, source: str, environ: Mapping[str, str], base: Path,
               skip: Collection[str] = ()) -> Substitutions:
    """Resolves the references in every string value of ``tree``, in place; keys are left as they are.

    Text a reference puts in is not searched for references again.

    Args:
        tree: a native file's data.
        source: the file, named in errors.
        environ: where ``${VAR}`` looks variables up.
        base: the directory a relative ``${file:path}`` is relative to (the file's).
        skip: dotted keys whose values are not resolved (an environment override replaces them).
    """
    resolver = _Resolver(source, environ, base, set(skip))
    resolver.walk(tree, "")
    return resolver.result


class _Resolver:
    def __init__(self, source: str, environ: Mapping[str, str], base: Path, skip: set[str]) -> None:
        self.source = source
        self.environ = environ
        self.base = base
        self.skip = skip
        self.result = Substitutions()

    def walk(self, node: Any, key: str) -> Any:
        """``node`` with its references resolved; dicts and lists are changed in place."""
        if key in self.skip:
            return node
        if isinstance(node, dict):
            for name, value in node.items():
                node[name] = self.walk(value, f"{key}.{name}" if key else str(name))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                node[index] = self.walk(value, f"{key}[{index}]")
        elif isinstance(node, str) and "${" in node:
            return self.resolve(node, key)
        return node

    def resolve(self, text: str, key: str) -> str:
        """``text`` with its references resolved; as it is, with the errors recorded, if one fails."""
        inserted: list[str] = []
        problems: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            body = match[1]
            if body is None:
                problems.append(f"a ${{ without its closing }}; write {_FORMS}")
                return match[0]
            if body.startswith("file:"):
                value = _read(body.removeprefix("file:"), self.base, problems)
            else:
                value = _variable(body, self.environ, problems)
            if value is None:
                return match[0]
            inserted.append(value)
            return value

        resolved = _TOKEN.sub(replace, text)
        if problems:
            self.result.failed.add(key)
            self.result.errors += [ConfigError(self.source, key, problem) for problem in problems]
            return text
        if inserted:
            self.result.inserted[key] = [*inserted, resolved]
        return resolved


def _variable(body: str, environ: Mapping[str, str], problems: list[str]) -> str | None:
    match = _VARIABLE.fullmatch(body)
    if match is None:
        problems.append(f"a ${{...}} that is not a reference; write {_FORMS}")
        return None
    name, default = match[1], match[2]
    value = environ.get(name)
    if default is not None and not value:
        return default
    if value is None:
        problems.append(f"environment variable {name} is not set (give a default with ${{{name}:-default}})")
    return value


def _read(name: str, base: Path, problems: list[str]) -> str | None:
    if not name:
        problems.append(f"${{file:}} without a path; write {_FORMS}")
        return None
    path = Path(name)
    if not path.is_absolute():
        path = base / path
    try:
        content = path.read_bytes().decode("utf-8")
    except OSError as exc:
        problems.append(f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        return None
    except UnicodeDecodeError:
        problems.append(f"cannot read {path}: not UTF-8 text")
        return None
    return content.removesuffix("\n").removesuffix("\r") if content.endswith("\n") else content


def _related(error_key: str, key: str) -> bool:
    """Whether an error about ``error_key`` may be about the value at ``key``, a part of it or its whole.

    Payload errors name the parameter alone (``PORTS`` for ``payload.PORTS``).
    """
    return any(_within(name, key) or _within(key, name) for name in (error_key, f"payload.{error_key}"))


def _within(inner: str, outer: str) -> bool:
    return inner == outer or (inner.startswith(outer) and inner[len(outer)] in ".[")
