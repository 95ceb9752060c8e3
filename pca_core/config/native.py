"""The native configuration: one TOML file, with environment overrides, validated into a :class:`Config`.

The file's string values may hold references to environment variables and files (``${VAR}``,
``${file:/run/secrets/mb}``: :mod:`pca_core.config.substitution`). Environment variables named
``PCA_<SECTION>__<KEY>`` override values, of either form of file (``PCA_TRANSPORT__URLS=h1:1883,h2:1883``,
``PCA_TRANSPORT__TLS__CA_FILE=...``, ``PCA_PAYLOAD__MEMBER_ID=...``,
``PCA_PUBLISHERS__0__OPTIONS__PASSWORD=...``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from pca_core.api.errors import ConfigError, ConfigErrors
from pca_core.config.schema import Config
from pca_core.config.substitution import substitute
from pca_core.config.validate import convert, is_sequence
from pca_core.stratos.payload import identity_from_params, parse_launch_params

_ENV_NAME = re.compile(r"^PCA_([A-Z][A-Z0-9_]*?)__(\w+)$")
_LISTS = ("publishers", "event_handlers")  # lists of tables: an override names an entry by its index


class _BadName(Exception):
    """A ``PCA_..__..`` variable that names nothing an override can set."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(expected)
        self.key = key
        self.expected = expected


def _target(name: str) -> list[str | int] | None:
    """The path (keys, and list indexes) a ``PCA_`` variable sets; None when it is not an override.

    Raises:
        _BadName: an unknown section, or a list entry not named by its index.
    """
    match = _ENV_NAME.match(name)
    if not match:
        return None
    sections = {f.name for f in msgspec.structs.fields(Config)}
    section = match[1].lower()
    if section not in sections:
        raise _BadName(section, f"unknown section (known: {', '.join(sorted(sections))})")
    rest = (match[2] if section == "payload" else match[2].lower()).split("__")
    if section not in _LISTS:
        return [section, *rest]
    index, *keys = rest
    if not index.isdigit():
        raise _BadName(section, f"an entry is named by its index, counted from 0: "
                                f"PCA_{section.upper()}__<INDEX>__<KEY>")
    if not keys:
        raise _BadName(f"{section}[{int(index)}]", f"a key of the entry is missing: "
                                                   f"PCA_{section.upper()}__{index}__<KEY>")
    return [section, int(index), *keys]


def dotted(path: list[str | int]) -> str:
    """The dotted key of a path: ``publishers[0].options.password``."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key


def overridden(environ: Mapping[str, str]) -> set[str]:
    """The dotted keys the ``PCA_`` variables of ``environ`` set (misnamed ones are left out)."""
    keys: set[str] = set()
    for name in environ:
        try:
            path = _target(name)
        except _BadName:
            continue
        if path is not None:
            keys.add(dotted(path))
    return keys


def env_overrides(tree: dict[str, Any],
                  environ: Mapping[str, str]) -> tuple[dict[str, str], list[ConfigError]]:
    """Applies ``PCA_<SECTION>__<KEY>`` variables to ``tree`` in place.

    Sections and keys are the TOML names in upper case; ``__`` separates nesting levels. Payload keys keep
    their case (``PCA_PAYLOAD__MEMBER_ID``). A value for a list is comma-separated. An entry of
    ``publishers`` or ``event_handlers`` is named by its index (``PCA_PUBLISHERS__0__OPTIONS__PASSWORD``);
    an override changes an entry the configuration has, it does not add one.

    Returns:
        {dotted key: the variable that set it}, and an error for each variable naming a section or an
        entry that does not exist.
    """
    origins: dict[str, str] = {}
    errors: list[ConfigError] = []
    for name in sorted(environ):
        source = f"environment variable {name}"
        try:
            path = _target(name)
        except _BadName as exc:
            errors.append(ConfigError(source, exc.key, exc.expected))
            continue
        if path is None:
            continue
        key = dotted(path)
        value: Any = environ[name]
        if is_sequence(Config, path):
            value = [item.strip() for item in value.split(",") if item.strip()]
        node: Any = tree
        section, index = str(path[0]), path[1]
        if isinstance(index, int):
            entries = tree.get(section)
            count = len(entries) if isinstance(entries, list) else 0
            if index >= count:
                errors.append(ConfigError(source, f"{section}[{index}]", _no_entry(section, count)))
                continue
            node = entries[index]
            if not isinstance(node, dict):
                continue  # the file's own error (an entry that is not a table) is reported by validation
            path = path[2:]
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        origins[key] = source
    return origins, errors


def _no_entry(section: str, count: int) -> str:
    have = {0: "has no entries", 1: "has 1 entry (index 0)"}.get(count, f"has {count} entries (indexes 0 to "
                                                                        f"{count - 1})")
    return (f"no such entry: {section} {have}; an override changes an entry of the configuration, add new "
            f"ones in the file")


def origin_of(key: str, source: str, environ: Mapping[str, str]) -> str:
    """Where the value at dotted ``key`` came from: the ``PCA_`` variable that set it, else ``source``.

    A key inside a list (``urls[1]``) comes from the variable that set the whole list; an entry of
    ``publishers`` or ``event_handlers`` is named by its index (``publishers[0].plugin``).
    """
    section, _, rest = key.partition(".")
    entry = re.fullmatch(r"(\w+)\[(\d+)\]", section)
    names, shortest = [section.upper()], 2  # PCA_<SECTION>__<KEY> at least
    if entry and entry[1] in _LISTS:
        names, shortest = [entry[1].upper(), entry[2]], 3  # PCA_<LIST>__<INDEX>__<KEY> at least
    parts = re.sub(r"\[\d+\]", "", rest).split(".") if rest else []
    names += [part if section == "payload" else part.upper() for part in parts]
    for end in range(len(names), shortest - 1, -1):
        name = "PCA_" + "__".join(names[:end])
        if name in environ:
            return f"environment variable {name}"
    return source


def load_toml(path: Path) -> dict[str, Any]:
    """Reads a TOML file into plain data.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML.
    """
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", f"not valid TOML: {exc}") from None


def read_payload_file(path: Path) -> dict[str, str]:
    """Reads a ``launch-params`` payload file.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        return parse_launch_params(path.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror or exc}") from None


def build(tree: dict[str, Any], *, source: str, environ: Mapping[str, str],
          origins: Mapping[str, str] | None = None, payload_source: str | None = None,
          errors: list[ConfigError] | None = None, check_identity: bool = True) -> Config:
    """Applies environment overrides to ``tree``, then validates it into a :class:`Config`.

    Args:
        tree: the configuration as plain data, in the native layout.
        source: the file it came from.
        environ: the environment whose ``PCA_`` variables override the file.
        origins: dotted keys whose value came from elsewhere (a legacy file), mapped to where.
        payload_source: where the payload came from, when not from ``source``.
        errors: problems found before (by a legacy reader), reported together with these.
        check_identity: whether to validate the payload's identity keys (a legacy reader did already).

    Raises:
        ConfigErrors: every problem, each naming the file or variable, the key and what was expected.
    """
    errors = list(errors or ())
    all_origins = dict(origins or {})
    env_origins, env_errors = env_overrides(tree, environ)
    all_origins.update(env_origins)
    errors += env_errors
    payload = tree.setdefault("payload", {})  # none at all: every mandatory key is reported missing
    if isinstance(payload, dict):
        # TOML may give numbers or booleans; payload parameters are strings, as in launch-params.
        tree["payload"] = payload = {k: str(v).lower() if isinstance(v, bool) else str(v)
                                     for k, v in payload.items()}
        lookup_origins = {key.removeprefix("payload."): value for key, value in all_origins.items()
                          if key.startswith("payload.")}
        try:
            if check_identity:
                identity_from_params(payload, payload_source or source)
        except ConfigErrors as exc:
            errors += [ConfigError(lookup_origins.get(e.key, e.source), e.key, e.expected)
                       for e in exc.errors]
    config: Config | None = None
    try:
        config = convert(tree, Config, source=source, origins=all_origins)
    except ConfigErrors as exc:
        errors += exc.errors
    if config is not None:
        errors += [ConfigError(origin_of(f"{section}.{issue.key}", source, environ), f"{section}.{issue.key}",
                               issue.expected)
                   for section, issues in (("agent", config.agent.issues()), ("logs", config.logs.issues()),
                                           ("http", config.http.issues()))
                   for issue in issues]
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def load_native(path: Path, payload_path: Path | None, environ: Mapping[str, str]) -> Config:
    """Loads a native TOML file, with the payload file it or the command line names.

    The file's references (``${VAR}``, ``${file:/path}``) are resolved first, except in the values an
    environment override replaces; a payload file is read as it is.

    Raises:
        ConfigErrors: naming the file, the key and what was expected, for every problem; never a value a
            reference put in.
    """
    tree = load_toml(path)
    subs = substitute(tree, source=str(path), environ=environ, base=path.parent, skip=overridden(environ))
    if "agent.payload_file" in subs.failed:  # the payload it names is unknown: every key would be missing
        raise ConfigErrors(subs.errors)
    file_payload = tree.get("payload", {})
    if not isinstance(file_payload, dict):
        raise ConfigError(str(path), "payload", "expected a table of KEY = \"value\" launch parameters")
    agent = tree.get("agent", {})
    payload_file = payload_path or (agent.get("payload_file") if isinstance(agent, dict) else None)
    payload_source = str(path)
    if payload_file:
        payload_file = (path.parent / payload_file) if not Path(payload_file).is_absolute() else payload_file
        tree["payload"] = {**file_payload, **read_payload_file(Path(payload_file))}
        payload_source = str(payload_file)
    try:
        return build(tree, source=str(path), environ=environ, payload_source=payload_source,
                     errors=subs.errors)
    except ConfigErrors as exc:
        raise ConfigErrors(subs.scrub(exc.errors)) from None
